import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Error text for people and notifications: never Foundation's domain/code strings
/// (`NSCocoaErrorDomain error 512`, `Error Domain=NSURLErrorDomain Code=-1001 ...`).
package enum HumanError {
    /// A one-line description of `error`.
    package static func describe(_ error: any Error) -> String {
        if let e = error as? ToolError { return scrub(e.message) }
        // By domain, not by `as? CocoaError`: on Linux that cast succeeds for any NSError.
        let ns = error as NSError
        if ns.domain == NSCocoaErrorDomain { return cocoa(CocoaError(CocoaError.Code(rawValue: ns.code), userInfo: ns.userInfo)) }
        if ns.domain == NSURLErrorDomain, let code = URLError.Code(rawValue: ns.code) { return url(URLError(code, userInfo: ns.userInfo)) }
        if ns.domain == NSPOSIXErrorDomain { return Sys.strerror(Int32(ns.code)) }
        return scrub("\(error)")
    }

    private static func cocoa(_ e: CocoaError) -> String {
        let path = (e.userInfo[NSFilePathErrorKey] as? String) ?? e.filePath ?? e.url?.path
        var why: String
        if let u = e.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
            why = Sys.strerror(Int32(u.code))
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
        return path.map { "\($0): \(why)" } ?? why
    }

    private static func url(_ e: URLError) -> String {
        let why: String
        switch e.code {
        case .timedOut: why = "the request timed out"
        case .cannotFindHost, .dnsLookupFailed: why = "the host name could not be resolved"
        case .cannotConnectToHost: why = "the connection was refused"
        case .networkConnectionLost: why = "the connection was lost"
        case .notConnectedToInternet: why = "the network is not reachable"
        case .secureConnectionFailed, .serverCertificateUntrusted, .serverCertificateHasBadDate,
             .serverCertificateNotYetValid, .serverCertificateHasUnknownRoot: why = "the TLS connection failed (certificate?)"
        case .badURL, .unsupportedURL: why = "the URL is not valid"
        case .badServerResponse: why = "the server sent a bad response"
        default: why = "the request failed (code \(e.code.rawValue))"
        }
        return why
    }

    /// Replaces Foundation's domain/code fragments left in a message by a plain phrase.
    package static func scrub(_ text: String) -> String {
        guard text.contains("Domain") else { return text }
        var s = text
        // `Error Domain=NSCocoaErrorDomain Code=4 "The file doesn't exist." UserInfo={...}`
        let patterns: [(String, String)] = [
            (#"Error Domain=NS[A-Za-z]*ErrorDomain Code=(-?\d+) "([^"]*)"( UserInfo=\{[^{}]*(\{[^{}]*\}[^{}]*)*\})?"#, "$2"),
            (#"Error Domain=NS[A-Za-z]*ErrorDomain Code=(-?\d+)( UserInfo=\{[^{}]*(\{[^{}]*\}[^{}]*)*\})?"#, "error $1"),
            (#"\s*\(NS[A-Za-z]*ErrorDomain error (-?\d+)\.\)"#, ""),
            (#"The operation could not be completed\."#, "the operation failed."),
        ]
        for (p, r) in patterns {
            s = s.replacingOccurrences(of: p, with: r, options: .regularExpression)
        }
        return s
    }
}
