import Foundation
import Support

extension Inventory {
    /// The inventory with every guest's `storage` and `tun` derived from its stack's compose
    /// file, so they are written down once. A value written in the inventory must agree: a
    /// guest whose stack mounts the storage path or maps /dev/net/tun cannot say `false`
    /// (an explicit `true` is kept: a guest may need either for something else).
    ///
    /// Also checks that every `stack:` names a stack, and that the inventory's puid/pgid equal
    /// PUID/PGID in `common/.env` when that file exists next to `stacks/`.
    /// - Parameter stacksDir: the repository's `stacks/` directory.
    /// - Throws: `InventoryError` naming the inventory line, host, field and what to do.
    package func resolvingStacks(stacksDir: String?) throws -> Inventory {
        var out = self
        let guests = hosts.filter { $0.role == .guest && $0.stack != nil }
        guard !guests.isEmpty else { return out }
        func fail(_ h: Host, _ message: String) -> InventoryError {
            InventoryError(message: "\(NameEscape.escape(path)):\(h.line): host '\(h.name)': \(message)")
        }
        guard let stacksDir else {
            throw fail(guests[0], "cannot find the stacks/ directory next to the templates or the inventory: hs-provision derives appdata directories, storage and TUN from stacks/<stack>/docker-compose.yml; run it from the repository checkout")
        }
        let known = StackRequirements.stacks(in: stacksDir)
        try checkIDs(against: (stacksDir as NSString).deletingLastPathComponent + "/common/.env")
        for (i, h) in hosts.enumerated() where h.role == .guest {
            guard let stack = h.stack else { continue }
            guard known.contains(stack) else {
                throw fail(h, "field 'stack' is '\(NameEscape.escape(stack))', which is not a stack under \(NameEscape.escape(stacksDir)) "
                              + "(stacks: \(known.map(NameEscape.escape).joined(separator: ", ")))")
            }
            let req: StackRequirements
            do {
                req = try StackRequirements.load(stacksDir: stacksDir, stack: stack, puid: defaults.puid, pgid: defaults.pgid)
            } catch {
                throw fail(h, ProvisionError.text(of: error))
            }
            let rel = "stacks/\(NameEscape.escape(stack))/docker-compose.yml"
            if h.storageDeclared == false && req.needsStorage {
                throw fail(h, "field 'storage' is false, but \(rel) mounts \(ProvisionContext.mountPoint) in \(req.storageServices.map(NameEscape.escape).joined(separator: ", ")): delete the field (it is derived from the compose file) or move those services to a guest with storage")
            }
            if h.tunDeclared == false && req.needsTun {
                throw fail(h, "field 'tun' is false, but \(rel) maps /dev/net/tun in \(req.tunServices.map(NameEscape.escape).joined(separator: ", ")): delete the field (it is derived from the compose file)")
            }
            out.hosts[i].storage = h.storageDeclared ?? req.needsStorage
            out.hosts[i].tun = h.tunDeclared ?? req.needsTun
        }
        return out
    }

    /// puid/pgid of the inventory against PUID/PGID of a filled-in common/.env (when present),
    /// read with `EnvFile` as hs-deploy and Compose read it.
    /// - Throws: `InventoryError` when they differ; `ToolError` naming the line when the file
    ///   is not dotenv.
    func checkIDs(against commonEnv: String) throws {
        guard let data = FileManager.default.contents(atPath: commonEnv) else { return }
        let env = try EnvFile.parse(String(decoding: data, as: UTF8.self), path: commonEnv)
        for (key, field, want) in [("PUID", "puid", defaults.puid), ("PGID", "pgid", defaults.pgid)] {
            if let v = env.value(key), !v.isEmpty, Int(v) != want {
                // A value of common/.env is shown only when it is the number it should be.
                let says = Int(v).map { "\(key)=\($0)" } ?? "\(key) is not a number (value not shown)"
                throw InventoryError(message: "\(NameEscape.escape(path)): defaults: field '\(field)' is \(want), but \(NameEscape.escape(commonEnv)) says \(says): the containers would write files the provisioned directories do not belong to; make them equal")
            }
        }
    }
}
