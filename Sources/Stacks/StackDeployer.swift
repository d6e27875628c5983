import Foundation
import Support

/// What hs-deploy was asked to do.
package struct DeployOptions: Sendable {
    package enum Action: String, Sendable, Encodable { case check, deploy, down }
    package var repo: String = "."
    package var stacks: [String] = []
    package var action: Action = .check
    package var pull = false
    /// With no stacks named: every stack of the repository (CI) instead of this host's.
    package var all = false
    /// `--save-env DIR`: copy the .env files there (for the nightly backup) and do nothing else.
    package var saveEnv: String?
    package var storagePath = "/mnt/storage"
    /// Filesystem kinds the storage guard accepts (default nfs, nfs4).
    package var storageFSTypes: [String] = StorageGuard.defaultFSTypes
    package var json = false

    package init() {}
}

/// One container of a deployed stack, from `docker compose ps --format json`.
package struct ServiceStatus: Sendable, Encodable {
    package var service: String
    package var state: String
    package var health: String
    package var ports: [String]
}

/// The outcome for one stack (the JSON object's `stacks[]`).
package struct StackOutcome: Sendable, Encodable {
    package var stack: String
    package var ok: Bool
    package var problems: [Problem]
    /// Services that bind-mount the storage path (derived from the parsed compose file).
    package var storageServices: [String]
    package var storage: StorageGuard.Verdict?
    package var services: [ServiceStatus]
    package var error: String?
}

/// hs-deploy's work: check, guard storage, `docker compose up -d` / `down`, summarise.
package enum StackDeployer {
    private struct Summary: Encodable {
        var action: DeployOptions.Action
        var ok: Bool
        var stacks: [StackOutcome]
        var error: String?
    }

    /// Runs the requested action and reports it.
    /// - Returns: 0 when every stack passed (and started / stopped), 1 otherwise.
    /// - Throws: `ToolError.usage` for an unknown stack or a missing repository.
    package static func run(_ options: DeployOptions) throws -> Int32 {
        let reporter = Reporter(mode: OutputMode.detect(json: options.json))
        let repo = StackRepository(root: options.repo)
        if let dir = options.saveEnv { return try EnvBackup.save(repo: repo, to: dir, reporter: reporter) }
        let all = try repo.allStacks()
        // With no names, --check and --pull act on this host's stacks: those whose .env is
        // present (each guest fills in the .env of the stack it runs); --all: every stack.
        let hostScoped = options.action == .check || (options.action == .deploy && options.pull)
        if options.stacks.isEmpty && !hostScoped {
            throw ToolError.usage("name the stack to \(options.action == .down ? "stop" : "deploy") (one of: \(all.map(NameEscape.escape).joined(separator: ", "))), or use --check / --pull for this host's stacks")
        }
        for s in options.stacks { try repo.requireStack(s) }
        var stacks = options.stacks
        if stacks.isEmpty {
            stacks = options.all ? all : repo.localStacks()
            if stacks.isEmpty {
                let msg = "no stacks/*/.env in \(NameEscape.escape(repo.root)): this host runs no stack yet. Create the .env of the stack it runs (cp stacks/STACK/.env.template stacks/STACK/.env, chmod 600, fill it in), name stacks explicitly, or use --all to check every stack (CI)"
                if reporter.mode == .json { reporter.emitJSON(Summary(action: options.action, ok: false, stacks: [], error: msg)) }
                else { reporter.error(msg) }
                return 1
            }
        }
        let checker = StackChecker(repo: repo)

        // Homepage is parsed once; a broken services.yaml is reported once (with aeos when it
        // is among the stacks, else with the first) and the port comparison is skipped.
        let homepage: Result<HomepageServices, ToolError> = Result { try HomepageServices.load(repo.homepageServices) }
            .mapError { ($0 as? ToolError) ?? ToolError(NameEscape.escape("\($0)")) }

        let homepageOwner = stacks.contains("aeos") ? "aeos" : stacks.first
        var outcomes: [StackOutcome] = []
        for (i, stack) in stacks.enumerated() {
            let shown = NameEscape.escape(stack)   // in messages; the outcome keeps the name as it is
            reporter.progress("\(options.action.rawValue) \(shown) (\(i + 1)/\(stacks.count))", force: true)
            var outcome = StackOutcome(stack: stack, ok: true, problems: [], storageServices: [], storage: nil, services: [], error: nil)
            let compose = DockerCompose(envFiles: [repo.commonEnv, repo.env(stack)], composeFile: repo.composeFile(stack))
            let secrets = compose.envFiles.flatMap { (try? EnvFile.load($0))?.entries.map(\.value) ?? [] }
            func failure(_ what: String, _ r: ProcessResult) -> String {
                StackChecker.scrub("`docker compose \(what)` failed: \(NameEscape.escape(DockerCompose.firstError(r.stderr)))", secrets: secrets)
            }
            if options.action == .down {
                // Stopping must work even when a .env went missing: fall back to the template.
                var downCompose = compose
                downCompose.envFiles = [(repo.commonEnv, repo.commonTemplate), (repo.env(stack), repo.template(stack))]
                    .map { FileManager.default.fileExists(atPath: $0.0) ? $0.0 : $0.1 }
                let r = try downCompose.run(["down"])
                if !r.succeeded { outcome.ok = false; outcome.error = failure("down", r) }
                outcomes.append(outcome); continue
            }
            var check = checker.check(stack, homepage: try? homepage.get())
            if case .failure(let e) = homepage, stack == homepageOwner {
                check.problems.append(Problem(file: repo.relative(repo.homepageServices), variable: nil, message: e.message))
            }
            outcome.problems = check.problems
            if stack == "aeos", case .success(let h) = homepage { outcome.problems += checker.unknownHomepageGroups(h, stacks: all) }
            if let project = check.project {
                outcome.storageServices = project.services(mounting: options.storagePath)
                if let why = StorageGuard.unguardedStorage(project, storagePath: options.storagePath) {
                    outcome.problems.append(Problem(file: repo.relative(repo.composeFile(stack)), variable: nil, message: why))
                }
            }
            if !outcome.problems.isEmpty { outcome.ok = false; outcomes.append(outcome); continue }
            guard options.action == .deploy else { outcomes.append(outcome); continue }

            // Appdata directories Docker would create owned by root (not provisioned yet).
            if let project = check.project {
                let missing = project.missingAppdataDirectories()
                if !missing.isEmpty {
                    outcome.ok = false
                    outcome.error = "not starting \(shown): \(missing.map(NameEscape.escape).joined(separator: ", ")) do(es) not exist; Docker would create them owned by root and a container running as PUID could not write there. Create them first: hs-provision apply --inventory provisioning/inventory.yml --host <this guest> --only directories"
                    outcomes.append(outcome); continue
                }
            }

            if !outcome.storageServices.isEmpty {
                let verdict = StorageGuard(path: options.storagePath, allowedFSTypes: options.storageFSTypes).check()
                outcome.storage = verdict
                if !verdict.ok {
                    outcome.ok = false
                    outcome.error = "not starting \(shown) (\(outcome.storageServices.map(NameEscape.escape).joined(separator: ", ")) mount "
                        + "\(NameEscape.escape(options.storagePath))): \(verdict.message)"
                    outcomes.append(outcome); continue
                }
            }
            if options.pull {
                reporter.progress("pulling images for \(shown)", force: true)
                let r = try compose.run(["pull"])
                if !r.succeeded {
                    outcome.ok = false; outcome.error = failure("pull", r)
                    outcomes.append(outcome); continue
                }
            }
            reporter.progress("starting \(shown)", force: true)
            let up = try compose.run(["up", "-d"])
            outcome.services = status(compose)
            if !up.succeeded {
                outcome.ok = false
                outcome.error = failure("up -d", up)
            }
            outcomes.append(outcome)
        }
        reporter.endProgress()
        report(outcomes, action: options.action, repo: repo, reporter: reporter)
        return outcomes.allSatisfy(\.ok) ? 0 : 1
    }

    /// The containers of a stack and their state (empty when compose cannot list them).
    static func status(_ compose: DockerCompose) -> [ServiceStatus] {
        guard let r = try? compose.run(["ps", "--all", "--format", "json"]), r.succeeded else { return [] }
        var objects: [[String: Any]] = []
        let text = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("[") {
            objects = (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]]) ?? []
        } else {
            for line in text.split(separator: "\n") {
                if let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] { objects.append(o) }
            }
        }
        return objects.map { o in
            let pubs = (o["Publishers"] as? [[String: Any]]) ?? []
            let ports = Set(pubs.compactMap { p -> String? in
                guard let pp = p["PublishedPort"] as? Int, pp != 0, let tp = p["TargetPort"] as? Int else { return nil }
                return "\(pp)->\(tp)"
            }).sorted()
            return ServiceStatus(service: (o["Service"] as? String) ?? "?", state: (o["State"] as? String) ?? "?",
                                 health: (o["Health"] as? String) ?? "", ports: ports)
        }.sorted { $0.service < $1.service }
    }

    static func report(_ outcomes: [StackOutcome], action: DeployOptions.Action, repo: StackRepository, reporter: Reporter) {
        if reporter.mode == .json {
            reporter.emitJSON(Summary(action: action, ok: outcomes.allSatisfy(\.ok), stacks: outcomes))
            return
        }
        var printed: Set<String> = []   // common/.env problems repeat for every stack: print once
        func shown(_ names: [String]) -> String { names.map(NameEscape.escape).joined(separator: ", ") }
        for o in outcomes {
            let stack = NameEscape.escape(o.stack)
            for p in o.problems where printed.insert(p.description).inserted { reporter.error(p.description) }
            if let e = o.error { reporter.error(e) }
            if reporter.mode == .terminal {
                if o.ok && action == .check { reporter.info("\(stack): ok") }
                if let v = o.storage, v.ok { reporter.info("\(stack): storage ok: \(v.message)") }
                for s in o.services {
                    // From `docker compose ps`: the service names are the compose file's.
                    let health = s.health.isEmpty ? "" : " (\(NameEscape.escape(s.health)))"
                    reporter.info("  \(stack)/\(NameEscape.escape(s.service)): \(NameEscape.escape(s.state))\(health)\(s.ports.isEmpty ? "" : " " + s.ports.joined(separator: ", "))")
                }
            }
        }
        let failed = outcomes.filter { !$0.ok }
        let problems = Set(outcomes.flatMap { $0.problems.map(\.description) }).count
        let line: String
        switch action {
        case .check:
            line = failed.isEmpty
                ? "hs-deploy --check: \(outcomes.count) stack(s) ok: \(shown(outcomes.map(\.stack)))"
                : "hs-deploy --check: \(problems) problem(s) in \(shown(failed.map(\.stack))); \(outcomes.count - failed.count) of \(outcomes.count) stack(s) ok"
        case .deploy:
            let parts = outcomes.map { o -> String in
                let running = o.services.filter { $0.state == "running" }.count
                return NameEscape.escape(o.stack) + (o.ok ? ": \(running)/\(o.services.count) running" : ": NOT started")
            }
            line = "hs-deploy: " + parts.joined(separator: "; ")
        case .down:
            line = "hs-deploy --down: " + outcomes.map { "\(NameEscape.escape($0.stack)) \($0.ok ? "stopped" : "FAILED")" }.joined(separator: "; ")
        }
        reporter.info(line)
    }
}
