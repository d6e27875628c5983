/// A place reached through the `rclone` binary: `rclone:REMOTE:PATH`, where `REMOTE:PATH` is
/// what rclone itself takes (`b2:bucket/backups`, `nas-sftp:/mnt/tank/offsite`, `gdrive:`, or a
/// connection string `:sftp,host=nas:/backups`). The remote comes from rclone's configuration
/// (`rclone config`; RCLONE_CONFIG names another file); no cloud SDK is involved.
package struct RcloneRemote: Sendable, Equatable {
    /// `REMOTE:PATH`, as rclone takes it.
    package let fs: String
    /// `rclone:REMOTE:PATH` with the options of a connection string hidden (they may hold a
    /// password or a key).
    package let displayName: String

    /// Why a value after `rclone:` is not `REMOTE:PATH` (nil when it is).
    package static func problem(_ fs: String) -> String? {
        if fs.isEmpty { return "give REMOTE:PATH after rclone:, e.g. rclone:b2:bucket/backups (`rclone listremotes` shows the remotes)" }
        if fs.hasPrefix("//") { return "rclone: takes REMOTE:PATH, not a URL: write e.g. rclone:nas-sftp:/mnt/tank/offsite" }
        let body = fs.hasPrefix(":") ? fs.dropFirst() : Substring(fs)
        guard let colon = body.firstIndex(of: ":") else {
            return "'\(fs)' names no remote: write rclone:REMOTE:PATH with a remote from `rclone listremotes` (a local directory needs no rclone: give the directory itself)"
        }
        let name = body[..<colon]
        if name.isEmpty || name.contains("/") || name.hasPrefix(" ") || name.hasSuffix(" ") {
            return "'\(name)' is not an rclone remote name: write rclone:REMOTE:PATH with a remote from `rclone listremotes`"
        }
        return nil
    }

    /// Parses the part after `rclone:`.
    /// - Returns: nil when `problem(fs)` has an objection.
    package init?(fs: String) {
        guard Self.problem(fs) == nil else { return nil }
        self.fs = fs
        let body = fs.hasPrefix(":") ? fs.dropFirst() : Substring(fs)
        let colon = body.firstIndex(of: ":")!
        let name = body[..<colon]
        let shownName = name.split(separator: ",", maxSplits: 1).first.map { name.contains(",") ? $0 + ",…" : $0 } ?? name
        displayName = "rclone:" + (fs.hasPrefix(":") ? ":" : "") + shownName + body[colon...]
    }

    /// The rclone path of `relative` (a `/`-separated path below this location).
    package func path(_ relative: String) -> String {
        if relative.isEmpty { return fs }
        return fs.hasSuffix(":") || fs.hasSuffix("/") ? fs + relative : fs + "/" + relative
    }

    /// `relative` as shown to people.
    package func display(_ relative: String) -> String {
        if relative.isEmpty { return displayName }
        return displayName.hasSuffix(":") || displayName.hasSuffix("/") ? displayName + relative : displayName + "/" + relative
    }
}
