// Error text for people (issue 14): no Foundation domain/code strings reach stderr or ntfy.
import Foundation
import Support
import Testing

@Suite struct HumanErrorTests {
    static let leaks = ["NSCocoaErrorDomain", "NSURLErrorDomain", "Error Domain=", "UserInfo="]

    @Test("Foundation errors become plain phrases", arguments: [
        (CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: "/mnt/backups/io"]) as any Error, "/mnt/backups/io: no such file or directory"),
        (CocoaError(.fileWriteOutOfSpace) as any Error, "no space left on the device"),
        (NSError(domain: NSCocoaErrorDomain, code: 512, userInfo: [NSUnderlyingErrorKey: NSError(domain: NSPOSIXErrorDomain, code: Int(EACCES))]) as any Error,
         "permission denied"),
        (URLError(.timedOut) as any Error, "the request timed out"),
        (NSError(domain: NSURLErrorDomain, code: -1004) as any Error, "the connection was refused"),
        (ToolError("backup failed") as any Error, "backup failed"),
    ])
    func describe(_ error: any Error, _ expected: String) {
        let text = HumanError.describe(error)
        #expect(text.lowercased() == expected.lowercased())
        for leak in Self.leaks { #expect(!text.contains(leak), "\(text)") }
    }

    @Test("scrub removes domain/code fragments that were interpolated into a message", arguments: [
        #"cannot read manifest x: Error Domain=NSCocoaErrorDomain Code=4 "The file doesn’t exist." UserInfo={NSFilePath=/x, NSUnderlyingError=0x1 {Error Domain=NSPOSIXErrorDomain Code=2 "No such file or directory"}}"#,
        "ntfy failed: The operation could not be completed. (NSURLErrorDomain error -1001.)",
        "write failed (NSCocoaErrorDomain error 512.)",
    ])
    func scrub(_ message: String) {
        let text = HumanError.scrub(message)
        for leak in Self.leaks { #expect(!text.contains(leak), "\(text)") }
        #expect(!text.isEmpty)
    }
}
