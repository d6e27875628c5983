import ArgumentParser

/// `--identity FILE` (repeatable) of the commands that read an encrypted set's contents.
package struct IdentityOptions: ParsableArguments {
    package init() {}

    @Option(name: .customLong("identity"),
            help: ArgumentHelp("An age key file (what `age-keygen -o` writes) to decrypt an encrypted set with; repeatable. "
                               + "Keep it off the guests.", valueName: "FILE"))
    package var identityFiles: [String] = []
}
