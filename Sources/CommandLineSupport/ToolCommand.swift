// CommandLineSupport: what every hs-* entry point shares on top of ArgumentParser.
import ArgumentParser
import Foundation
import Support

/// A root command of the toolkit. Adopting it changes one thing from ArgumentParser's
/// default `main()`: bad usage exits with 2 (the toolkit's contract: 0 ok, 1 failed,
/// 2 bad usage) instead of ArgumentParser's 64, after printing the error and the usage.
package protocol ToolCommand: AsyncParsableCommand {}

extension ToolCommand {
    package static func main() async {
        do {
            var command = try parseAsRoot()
            if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                Reporter.writeStderr(fullMessage(for: error) + "\n" + usageString() + "\n")
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}
