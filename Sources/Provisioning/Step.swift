import Foundation

/// One change a step wants to make, planned as data so `plan` can print it and `apply` can
/// perform it.
package enum Action: Sendable, Equatable {
    /// Write a file (created when `old` is nil) atomically, keeping a backup of the old one.
    case writeFile(path: String, old: String?, new: String)
    /// Write a file that holds secrets: created mode 0600 before any content is written, made
    /// 0600 when it exists with a wider mode, its backup 0600 too. The plan shows `shownOld`
    /// and `shownNew` (the content with the values hidden), never `old` or `new`.
    case writePrivateFile(path: String, old: String?, new: String, shownOld: String?, shownNew: String)
    /// Remove a file (it is moved to its backup path).
    case removeFile(path: String, old: String)
    /// Create a directory and/or set its owner.
    case directory(path: String, uid: Int, gid: Int, create: Bool)
    /// Run a command on the target (printed instead in `--root` mode).
    case command([String])

    package var isCommand: Bool { if case .command = self { return true } else { return false } }
}

/// What a step would do now.
package struct StepPlan: Sendable, Equatable {
    package var actions: [Action] = []
    /// Commands that verify the result; they change nothing and run on every apply.
    package var checks: [[String]] = []
    /// Warnings for the person running the tool.
    package var notes: [String] = []

    package init(actions: [Action] = [], checks: [[String]] = [], notes: [String] = []) {
        self.actions = actions; self.checks = checks; self.notes = notes
    }
}

/// A named provisioning step: reads the current state and plans the actions that make it
/// match the inventory. Planning has no side effects on the target except read-only queries.
package struct Step: Sendable {
    /// Name used by `--only` (`lxc:io` is also selected by `--only lxc`).
    package var name: String
    /// Computes the plan from the current state.
    package var plan: @Sendable (Machine) throws -> StepPlan

    package init(_ name: String, plan: @escaping @Sendable (Machine) throws -> StepPlan) {
        self.name = name; self.plan = plan
    }

    /// True when `--only` selects this step (no filter selects everything).
    package func selected(by only: [String]) -> Bool {
        only.isEmpty || only.contains(name) || only.contains(String(name.split(separator: ":").first ?? ""))
    }
}

/// The outcome of one step.
package enum StepStatus: String, Sendable, Codable {
    /// Already as desired.
    case ok
    /// Files written or commands run (apply) / would change (plan).
    case changed
    /// `--root` mode: only commands remain and they were printed, not run.
    case pending
    case failed
}
