import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// Error text for people and notifications: never Foundation's domain/code strings
/// (`NSCocoaErrorDomain error 512`, `Error Domain=NSURLErrorDomain Code=-1001 ...`).
package enum HumanError {
    /// A one-line description of `error`.
    package static func describe(_ error: any Error) -> String {
        if let e = error as? ToolError { return scrub(e.message) }
        // By domain (Error's `_domain`/`_code`, which NSError, URLError and CocoaError answer
        // without Foundation), not by `as? CocoaError` alone: in a process that links Foundation
        // that cast succeeds for any NSError. FoundationEssentials' own CocoaError and
        // POSIXError report their type name as the domain, so they are matched by type.
        let domain = error._domain
        if domain == "NSCocoaErrorDomain" || type(of: error) == CocoaError.self, let e = error as? CocoaError { return cocoa(e) }
        if domain == "NSURLErrorDomain" { return url(error._code) }
        if domain == "NSPOSIXErrorDomain" { return Sys.strerror(Int32(error._code)) }
        if type(of: error) == POSIXError.self, let e = error as? POSIXError { return Sys.strerror(e.code.rawValue) }
        return scrub("\(error)")
    }

    private static func cocoa(_ e: CocoaError) -> String {
        let path = (e.userInfo["NSFilePath"] as? String) ?? e.filePath ?? e.url?.path
        var why: String
        if let u = e.userInfo["NSUnderlyingError"] as? any Error, u._domain == "NSPOSIXErrorDomain" || type(of: u) == POSIXError.self {
            why = Sys.strerror((u as? POSIXError)?.code.rawValue ?? Int32(u._code))
        } else {
            switch e.code {
            case .fileNoSuchFile, .fileReadNoSuchFile: why = "no such file or directory"
            case .fileReadNoPermission, .fileWriteNoPermission: why = "permission denied"
            case .fileWriteOutOfSpace: why = "no space left on the device"
            case .fileWriteVolumeReadOnly: why = "read-only file system"
            case .fileWriteFileExists: why = "the file exists already"
            case .fileReadCorruptFile, .propertyListReadCorrupt: why = "the data is not in the expected format"
            case .fileReadInapplicableStringEncoding, .fileWriteInapplicableStringEncoding: why = "the text is not valid UTF-8"
            default: why = "file operation failed (code \(e.code.rawValue))"
            }
        }
        return path.map { "\(NameEscape.escape($0)): \(why)" } ?? why   // Foundation's path, as it is
    }

    /// URLError's codes (NSURLErrorDomain), which FoundationEssentials does not define.
    private static func url(_ code: Int) -> String {
        switch code {
        case -1001: "the request timed out"
        case -1003, -1006: "the host name could not be resolved"  // cannotFindHost, dnsLookupFailed
        case -1004: "the connection was refused"  // cannotConnectToHost
        case -1005: "the connection was lost"  // networkConnectionLost
        case -1009: "the network is not reachable"  // notConnectedToInternet
        // secureConnectionFailed, serverCertificateHasBadDate, serverCertificateUntrusted,
        // serverCertificateHasUnknownRoot, serverCertificateNotYetValid
        case -1200, -1201, -1202, -1203, -1204: "the TLS connection failed (certificate?)"
        case -1000, -1002: "the URL is not valid"  // badURL, unsupportedURL
        case -1011: "the server sent a bad response"  // badServerResponse
        default: "the request failed (code \(code))"
        }
    }

    /// Replaces Foundation's domain/code fragments left in a message by a plain phrase.
    package static func scrub(_ text: String) -> String {
        // (Scalar by scalar: `String.contains(String)` is _StringProcessing's, whose first use
        // in a process costs ~0.1 ms of generic set-up; every error and summary passes here.)
        guard text.scalarRange(of: "Domain") != nil else { return text }
        var s = text
        // `Error Domain=NSCocoaErrorDomain Code=4 "The file doesn't exist." UserInfo={...}`
        let patterns: [(String, String)] = [
            (#"Error Domain=NS[A-Za-z]*ErrorDomain Code=(-?\d+) "([^"]*)"( UserInfo=\{[^{}]*(\{[^{}]*\}[^{}]*)*\})?"#, "$2"),
            (#"Error Domain=NS[A-Za-z]*ErrorDomain Code=(-?\d+)( UserInfo=\{[^{}]*(\{[^{}]*\}[^{}]*)*\})?"#, "error $1"),
            (#"\s*\(NS[A-Za-z]*ErrorDomain error (-?\d+)\.\)"#, ""),
            (#"The operation could not be completed\."#, "the operation failed."),
        ]
        for (p, r) in patterns {
            // Scalar by scalar, as NSRegularExpression matched; `$N` in the replacement is capture
            // group N, as in its templates.
            s = s.replacing(try! Regex(p).matchingSemantics(.unicodeScalar)) { match in
                var out = ""
                var rest = Substring(r)
                while let c = rest.popFirst() {
                    if c == "$", let d = rest.first?.wholeNumberValue {
                        rest.removeFirst()
                        out += match.output[d].substring ?? ""
                    } else {
                        out.append(c)
                    }
                }
                return out
            }
        }
        return s
    }
}
