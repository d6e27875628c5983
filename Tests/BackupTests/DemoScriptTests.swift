import Foundation
import Support
import Testing
import TestSupport

/// The README's first command runs scripts/demo.sh: it must keep working as the tools change.
@Suite struct DemoScriptTests {
    @Test func demoBacksUpChangesAndRestoresIdentically() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let dir = try TempDir("hs-demo")
        let r = try Subprocess.run(["bash", repo + "/scripts/demo.sh"],
                                   environment: ["HS_BIN": Tools.productsDirectory.path, "HS_DEMO_DIR": dir.sub("demo")],
                                   directory: repo)
        #expect(r.status == 0, "demo.sh failed:\n\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains("appdata           vs restored       : 561 entries, IDENTICAL"))
        #expect(r.stdout.contains("appdata-at-first  vs restored-first : 561 entries, IDENTICAL"))
        #expect(r.stdout.contains("(incremental) of 259 files: 3 archived"))
    }
}
