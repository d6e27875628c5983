import ArgumentParser
import CommandLineSupport
import Foundation
import Provisioning
import Support

@main
struct HsProvision: ToolCommand {
    static let configuration = CommandConfiguration(
        commandName: "hs-provision",
        abstract: "Bring a host up from one inventory: Docker, NFS fstab, LXC bind mounts, Tailscale, directories.",
        discussion: """
            Steps (each reads the current state, plans, applies, verifies; reports
            ok/changed/failed):
              Proxmox host:
                packages (nfs-common)
                storage-mount (managed fstab block from provisioning/fstab.template,
                  mount, probe `hs-linkcheck --require-mount /mnt/storage`)
                subids (root:PUID:1 in /etc/subuid, root:PGID:1 in /etc/subgid)
                guest:<guest> for guests with `template` (lxc) or `image` (vm):
                  `pct create` / `qm create` + `qm disk resize` when the guest does
                  not exist; an existing guest is never recreated
                lxc:<guest> (/etc/pve/lxc/<vmid>.conf live section from
                  provisioning/lxc-config.template: mpN bind mount, features
                  nesting+keyctl, TUN lines, PUID/PGID idmap; `pct set` when present)
                start:<guest> (`pct start` / `qm start` when onboot and stopped)
              Guest:
                packages, docker-repo (official deb822 repository; docker_source:
                docker only), docker, docker-service, docker-group, directories
                (/opt/stacks, /opt/appdata/<service>), storage-mount (VM guests with
                storage), tailscale-repo, tailscale (enroll unless running under the
                host's name), repo (clone/fast-forward /opt/stacks/home-server)
            Files are written only when different, atomically, with a backup
            FILE.hs-backup-YYYYMMDDHHMMSS (files in /etc/apt/sources.list.d and
            /etc/pve: under /var/backups/home-server/).
            Modes: default = the live system; --root DIR edits files under DIR and
            prints commands; --chroot DIR edits files under DIR and runs commands via
            `chroot DIR ...` (a prepared root: /proc mounted, usr/sbin/policy-rc.d
            exiting 101; used by the tests).
            `hs-provision inventory --ansible` prints the inventory as Ansible's JSON
            inventory (provisioning/ansible/inventory.sh, used by provisioning/site.yml).
            Exit codes: 0 success, 1 a step failed, 2 bad usage (bad inventory, host or
            step name). \(ExitStatus.onlyBackupRun)

            Examples:
              hs-provision plan  --inventory provisioning/inventory.yml --host pve
              hs-provision apply --inventory provisioning/inventory.yml --host io
              hs-provision apply --inventory provisioning/inventory.yml --host io --only docker --only tailscale
              hs-provision plan  --inventory provisioning/inventory.yml --host io --root /tmp/io-root
              hs-provision inventory --ansible --inventory provisioning/inventory.yml
            """,
        version: homeServerVersion,
        subcommands: [Plan.self, Apply.self, InventoryCommand.self])
}

struct ProvisionOptions: ParsableArguments, UsageChecks {
    @Option(help: ArgumentHelp("Inventory file (see provisioning/inventory.example.yml).", valueName: "FILE"))
    var inventory: String

    @Option(help: ArgumentHelp("Host name from the inventory to provision.", valueName: "NAME"))
    var host: String

    @Option(help: ArgumentHelp("Edit files under DIR instead of / and print host commands instead of running them.", valueName: "DIR"))
    var root: String?

    @Option(help: ArgumentHelp("Edit files under DIR and run commands inside it with `chroot DIR` (a prepared Debian root).", valueName: "DIR"))
    var chroot: String?

    @Option(name: .customLong("only"), help: ArgumentHelp("Run only this step (repeatable; `lxc` selects every lxc:<guest>).", valueName: "STEP"))
    var only: [String] = []

    @Option(help: ArgumentHelp("Directory with fstab.template and lxc-config.template (default: next to the inventory or ./provisioning).", valueName: "DIR"))
    var templates: String?

    @Flag(help: "Print one JSON object on stdout instead of text.")
    var json = false

    @OptionGroup var verbosity: VerbosityOptions

    func checkUsage() throws {
        if root != nil && chroot != nil { throw ValidationError("--root and --chroot exclude each other") }
        for d in [root, chroot].compactMap({ $0 }) where !FileManager.default.fileExists(atPath: d) {
            throw ValidationError("directory \(NameEscape.escape(d)) does not exist")
        }
    }

    func request(apply: Bool) -> ProvisionRequest {
        let mode: ExecMode = root.map { .root($0) } ?? chroot.map { .chroot($0) } ?? .live
        return ProvisionRequest(inventoryPath: inventory, hostName: host, mode: mode, only: only, apply: apply,
                                templatesDir: templates, json: json)
    }
}

extension HsProvision {
    struct Plan: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "plan",  // explicit: the default goes through String(describing:) at every start
            abstract: "Show the commands and file diffs apply would make.",
            discussion: """
            Examples:
              hs-provision plan --inventory provisioning/inventory.yml --host io
              hs-provision plan --inventory provisioning/inventory.yml --host pve --json
            """)
        @OptionGroup var options: ProvisionOptions
        func run() throws {
            let code = toolMain { try Provisioner.run(options.request(apply: false)) }
            if code != 0 { throw ExitCode(code) }
        }
    }

    struct Apply: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "apply",  // explicit: the default goes through String(describing:) at every start
            abstract: "Make the host match the inventory; idempotent.",
            discussion: """
            Examples:
              hs-provision apply --inventory provisioning/inventory.yml --host io
              hs-provision apply --inventory provisioning/inventory.yml --host pve --only storage-mount
            """)
        @OptionGroup var options: ProvisionOptions
        func run() throws {
            let code = toolMain { try Provisioner.run(options.request(apply: true)) }
            if code != 0 { throw ExitCode(code) }
        }
    }
}

extension HsProvision {
    struct InventoryCommand: ParsableCommand, UsageChecks {
        static let configuration = CommandConfiguration(
            commandName: "inventory",
            abstract: "Print the inventory for another tool (Ansible's JSON inventory).",
            discussion: """
                ansible-playbook -i provisioning/ansible/inventory.sh provisioning/site.yml runs this
                (as a dynamic inventory script Ansible passes --list, or --host NAME).

                Examples:
                  hs-provision inventory --ansible --inventory provisioning/inventory.yml
                  ansible-playbook -i provisioning/ansible/inventory.sh provisioning/site.yml
                """)

        @Option(help: ArgumentHelp("Inventory file (see provisioning/inventory.example.yml).", valueName: "FILE"))
        var inventory: String

        @Flag(help: "Print Ansible's JSON inventory: groups proxmox, guests, lxc, vm and every host's variables in _meta.hostvars.")
        var ansible = false

        @Flag(help: "Print the whole inventory (what Ansible asks a dynamic inventory script for; the default).")
        var list = false

        @Option(name: .customLong("host"), help: ArgumentHelp("Print only this host's variables (Ansible's --host call).", valueName: "NAME"))
        var hostName: String?

        func checkUsage() throws {
            guard ansible else { throw ValidationError("choose an output format: --ansible (the only one so far)") }
            if list && hostName != nil { throw ValidationError("--list and --host exclude each other") }
        }

        func run() throws {
            let code = toolMain {
                try InventoryExport.run(inventoryPath: inventory, host: hostName)
            }
            if code != 0 { throw ExitCode(code) }
        }
    }
}
