// The one DEST parser (issue 14), as a table: what is accepted, and what is a usage error.
import Foundation
@testable import Storage
import Support
import Testing
@testable import NFS

@Suite struct DestinationSpecTests {
    @Test("accepted destinations", arguments: [
        ("/mnt/backups", true, "local /mnt/backups"),
        ("/mnt/backups/", true, "local /mnt/backups/"),
        ("relative/dir", true, "local relative/dir"),
        ("nfs://truenas/mnt/tank/backups", false, "nfs nfs://truenas/mnt/tank/backups"),
        ("nfs://truenas/mnt/tank/backups?timeout=5&nfsport=2049", false, "nfs nfs://truenas/mnt/tank/backups?timeout=5&nfsport=2049"),
        ("nfs://truenas/mnt/tank/backups?version=3", false, "nfs nfs://truenas/mnt/tank/backups?version=3"),
        ("rclone:b2:bucket/backups", false, "rclone b2:bucket/backups shown as rclone:b2:bucket/backups"),
        ("rclone:gdrive:", false, "rclone gdrive: shown as rclone:gdrive:"),
        ("rclone:nas-sftp:/mnt/tank/offsite", false, "rclone nas-sftp:/mnt/tank/offsite shown as rclone:nas-sftp:/mnt/tank/offsite"),
        // A connection string's options may hold a password: never shown.
        ("rclone::sftp,host=nas,pass=hunter2:/b", false,
         "rclone :sftp,host=nas,pass=hunter2:/b shown as rclone::sftp,…:/b"),
    ])
    func accepted(_ value: String, _ interactive: Bool, _ expected: String) throws {
        let spec = try DestinationSpec.parse(value, allowRelative: interactive)
        switch spec {
        case .local(let p): #expect("local \(p)" == expected)
        case .nfs(let u): #expect("nfs \(u.displayString)" == expected)
        case .rclone(let r): #expect("rclone \(r.fs) shown as \(r.displayName)" == expected)
        }
    }

    @Test("refused destinations are usage errors that quote the value and show an example", arguments: [
        ("", "empty"), ("   ", "empty"), ("NFS://nas/b", "misspelled"), ("nfs:/nas/b", "misspelled"), ("nfs:nas/b", "misspelled"),
        ("nfs//nas/b", "misspelled"), ("Nfs://nas/b", "misspelled"), ("smb://nas/b", "unknown scheme"), ("s3:bucket", "unknown scheme"),
        ("relative/dir", "relative"), (" /mnt/b", "spaces"), ("nfs://nas", "export path is missing"),
        ("nfs://nas/b?version=4", "NFSv4"), ("nfs://nas/b?timeout=0", "timeout"), ("nfs://nas/b?timeout=x", "timeout"),
        ("nfs:///b", "server name is missing"),
        ("rclone:", "give REMOTE:PATH"), ("rclone:/mnt/b", "names no remote"), ("rclone://nas/b", "not a URL"),
        ("rclone:bucket", "names no remote"), ("Rclone:b2:x", "misspelled rclone"), ("rclone/b2:x", "misspelled rclone"),
    ])
    func refused(_ value: String, _ why: String) {
        let e = caught(ToolError.self) { _ = try DestinationSpec.parse(value, allowRelative: false) }
        #expect(e?.exitCode == 2, "'\(value)'")
        #expect(e?.message.contains("'\(value)'") == true && e?.message.contains("nfs://truenas/mnt/tank/backups") == true, "\(String(describing: e))")
        #expect(e?.message.contains(why) == true, "'\(value)': \(String(describing: e?.message))")
    }

    @Test("timeout= is read by the toolkit and not passed to libnfs")
    func timeoutArgument() throws {
        let u = try NFSURL("nfs://nas/b?nfsport=2049&timeout=7")
        #expect(u.timeoutSeconds == 7)
        #expect(u.libnfsString == "nfs://nas/b?nfsport=2049")
    }

    /// `DestinationSpec.isBlank` is `CharacterSet.whitespaces`, scalar by scalar.
    @Test("isBlank is CharacterSet.whitespaces for every Unicode scalar")
    func blankIsFoundationWhitespace() {
        var differ: [UInt32] = []
        for v in UInt32(0) ... 0x10FFFF {
            guard let u = Unicode.Scalar(v) else { continue }
            if DestinationSpec.isBlank(u) != CharacterSet.whitespaces.contains(u) { differ.append(v) }
        }
        #expect(differ.isEmpty, "\(differ.prefix(20).map { String($0, radix: 16) })")
    }

    /// `parse` finds blank and padded values without Foundation's CharacterSet (issue 23):
    /// exactly where `trimmingCharacters(in: .whitespaces)` removes something.
    @Test("blank and padded destinations are refused exactly where trimmingCharacters(in: .whitespaces) trims")
    func blankAsFoundationTrims() {
        let values = ["", " ", "\t", "\n", " \t ", "\u{00A0}", "\u{3000}", "\u{2009}", "\u{200B}", "\u{180E}", "\u{0085}", "\u{2028}", "\u{205F}", "/x\u{200B}", " /x", "/x ", "/x\t",
                      "/x\u{00A0}", "\u{3000}/x", "/x\n", "\n/x", "/x y", "/x", "/x\u{0301}", " \u{0301}", "\u{FEFF}/x", "\u{1680}/x"]
        for v in values {
            let trimmed = v.trimmingCharacters(in: .whitespaces)
            var message = ""
            do { _ = try DestinationSpec.parse(v, allowRelative: true) } catch { message = "\(error)" }
            #expect(message.contains("is empty") == trimmed.isEmpty, "\(v.unicodeScalars.map { $0.value }): \(message)")
            if !trimmed.isEmpty {
                #expect(message.contains("leading or trailing spaces") == (v != trimmed), "\(v.unicodeScalars.map { $0.value }): \(message)")
            }
        }
    }
}
