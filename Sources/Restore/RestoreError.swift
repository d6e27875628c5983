import Archive
import Glibc
import Support

/// Why a restore stopped: what, where, and what to do. Thrown at the Restore module's edge
/// (the command line turns it into a message and an exit code; nothing decides by its text).
package enum RestoreError: Error, CustomStringConvertible, Sendable {
    /// The target directory cannot be used.
    case target(TargetProblem, path: String)
    /// An entry refused by a safety rule; nothing was written outside the target.
    case refused(Rule, entry: String, detail: String)
    /// `--only` patterns (escaped for people) that select nothing in the source.
    case onlyMatchedNothing(patterns: [String], source: String, restoredOthers: Bool)
    /// A system call failed (the SysError names the call, the entry and errno).
    case io(SysError)
    /// The source could not be read, or is damaged; `possiblyWrong` are files written from
    /// its part that was not verified yet (a gzip member whose CRC failed).
    case source(ArchiveError, possiblyWrong: [String], more: Int)
    /// A file's content does not match its SHA-256 in the backup's manifest.
    case contentMismatch(entry: String, origin: String?)
    /// A hardlink whose target is not restored before it, or not in the source at all.
    case missingLinkTarget(entry: String, target: String, hint: String)
    /// The plan the source made is inconsistent (a damaged manifest).
    case inconsistentPlan(String)

    /// Problems with the target directory.
    package enum TargetProblem: Sendable, Equatable {
        case notADirectory
        /// Not empty, and `--force` was not given.
        case notEmpty(entries: Int)
        case cannotCreate(SysError)
        case cannotOpen(SysError)
        /// There, but its entries cannot be read (so whether it is empty is not known).
        case cannotList(SysError)
    }

    /// The named safety rules of the restore.
    package enum Rule: String, Sendable, Equatable {
        case parentTraversal = "parent-traversal"
        case nulInPath = "nul-in-path"
        case emptyPath = "empty-path"
        case symlinkInPath = "symlink-in-path"
        case notADirectory = "not-a-directory"
        case hardlinkEscape = "hardlink-escape"
        case hardlinkToDirectory = "hardlink-to-directory"
        case swapped = "swapped"
        /// Larger than the target filesystem's largest file, or than its free space.
        case tooLarge = "too-large"
        /// Far more zeros than the target filesystem holds (inflate work bounded).
        case zeroBomb = "zero-bomb"
    }

    /// True for a target problem the person can fix by choosing another `--to` or `--force`.
    package var isUsage: Bool {
        if case .target(let p, _) = self {
            switch p {
            case .notADirectory, .notEmpty: return true
            case .cannotCreate, .cannotOpen, .cannotList: return false
            }
        }
        return false
    }

    package var description: String {
        switch self {
        case .target(let p, let typed):
            let path = NameEscape.escape(typed)
            switch p {
            case .notADirectory: return "--to \(path) is not a directory"
            case .notEmpty(let n):
                return "--to \(path) is not empty (\(n) entries); pick an empty directory or pass --force to replace what is there"
            case .cannotCreate(let e):
                // The directory that could not be made, when it is a parent of the target.
                let parent = typed.hasPrefix(e.path + "/") && typed.dropFirst(e.path.count).contains { $0 != "/" }
                return "cannot create the target \(path): \(e.reason)" + (parent ? " (mkdir \(NameEscape.escape(e.path)))" : "")
            case .cannotOpen(let e): return "cannot open the target \(path): \(e.reason)"
            case .cannotList(let e):
                let fix = e.errno == EACCES || e.errno == EPERM ? "Give this user read permission on it" : "Check the disk (dmesg)"
                return "cannot list the target \(path) to see whether it is empty: \(e.reason) (errno \(e.errno)); nothing was restored. "
                    + "\(fix), or restore into another --to (a new or empty directory)"
            }
        case .refused(let rule, let entry, let detail):
            return "refused entry '\(entry)' (rule: \(rule.rawValue)): \(detail)"
        case .onlyMatchedNothing(let patterns, let source, let others):
            let list = patterns.joined(separator: ", ")
            return "--only \(list): no such path in \(source)\(others ? " (the other --only paths were restored)" : "; nothing was restored"). `hs-restore --dry-run` lists what it holds."
        case .io(let e):
            return "\(e.call) failed for '\(e.path)': \(e.reason)" + (e.hint.map { "; \($0)" } ?? "")
        case .source(let e, let wrong, let more):
            guard !wrong.isEmpty else { return e.description }
            return e.description + "; restored from the damaged part of the archive, so possibly wrong: "
                + wrong.joined(separator: ", ") + (more > 0 ? " and \(more) more" : "")
        case .contentMismatch(let entry, let origin):
            return "'\(entry)': content\(origin.map { " from \($0)" } ?? "") does not match its SHA-256 in the manifest (damaged archive); it was not restored. Run `hs-backup verify`."
        case .missingLinkTarget(let entry, let target, let hint):
            return "hardlink '\(entry)': hardlink target '\(target)' \(hint)"
        case .inconsistentPlan(let why):
            return why
        }
    }
}
