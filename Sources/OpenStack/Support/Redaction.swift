import Foundation

/// Takes secrets out of text that will be shown: URLs, header values and response excerpts.
///
/// Secrets normally travel as `Secret`, which never prints; this is the second line of defence
/// for text that comes from elsewhere (a server's error body echoing a request, a URL with a
/// signature in its query) before it goes into an error or a log line.
public enum Redaction {
    public static let placeholder = "<redacted>"

    /// Header names whose values are credentials.
    static let secretHeaders: Set<String> = [
        "x-auth-token", "x-subject-token", "authorization", "proxy-authorization", "cookie", "set-cookie",
        "x-service-token", "x-image-meta-password",
    ]

    /// Words that make a JSON key, query parameter or header a secret when they appear in its name.
    static let secretWords = ["password", "passwd", "token", "secret", "private_key", "privatekey", "adminpass",
                              "signature", "credential", "auth_key", "api_key", "apikey"]

    public static func isSecretHeader(_ name: String) -> Bool {
        let lower = name.lowercased()
        return secretHeaders.contains(lower) || secretWords.contains { lower.contains($0.replacingOccurrences(of: "_", with: "-")) }
    }

    static func isSecretName(_ name: String) -> Bool {
        let lower = name.lowercased()
        return secretWords.contains { lower.contains($0) }
    }

    /// The URL without a user's password and without the values of secret-looking query
    /// parameters (`?temp_url_sig=…`, `?token=…`), so it can name a failing request. Works on
    /// the text as written, so the rest of the URL reads exactly as it was sent.
    public static func url(_ text: String) -> String {
        var result = text
        // user:password@host
        if let scheme = result.range(of: "://") {
            let authorityEnd = result[scheme.upperBound...].firstIndex { "/?#".contains($0) } ?? result.endIndex
            let authority = result[scheme.upperBound..<authorityEnd]
            if let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") {
                result.replaceSubrange(result.index(after: colon)..<at, with: placeholder)
            }
        }
        guard let question = result.firstIndex(of: "?") else { return result }
        let fragmentStart = result[question...].firstIndex(of: "#") ?? result.endIndex
        let query = result[result.index(after: question)..<fragmentStart]
        let parameters = query.split(separator: "&", omittingEmptySubsequences: false).map { parameter -> String in
            let name = parameter.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let decoded = name.removingPercentEncoding ?? name
            return isSecretName(decoded) || decoded.lowercased().hasSuffix("sig") ? "\(name)=\(placeholder)" : String(parameter)
        }
        return String(result[...question]) + parameters.joined(separator: "&") + result[fragmentStart...]
    }

    /// A header value as it may be shown.
    public static func headerValue(name: String, value: String) -> String {
        isSecretHeader(name) ? placeholder : value
    }

    private static let jsonSecret = try! NSRegularExpression(
        pattern: #"("[^"]*(?:password|passwd|token|secret|private_key|privatekey|adminpass|credential|auth_key|api_key)[^"]*"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}\]\s]+)"#,
        options: [.caseInsensitive])
    private static let headerSecret = try! NSRegularExpression(
        pattern: #"((?:x-auth-token|x-subject-token|x-service-token|authorization)\s*[:=]\s*)[^\s,;"']+"#,
        options: [.caseInsensitive])
    private static let privateKeyBlock = try! NSRegularExpression(
        pattern: #"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"#,
        options: [.dotMatchesLineSeparators])

    /// Free text (a response body, a message) with JSON members, header lines and PEM private
    /// keys that hold secrets replaced, and with any of `known` (the secrets the caller holds)
    /// removed wherever they appear.
    public static func text(_ text: String, known: [Secret] = []) -> String {
        var result = text
        for secret in known where secret.revealed.count >= 4 {
            result = result.replacingOccurrences(of: secret.revealed, with: placeholder)
        }
        result = replace(privateKeyBlock, in: result, with: placeholder)
        result = replace(jsonSecret, in: result, with: "$1\"\(placeholder)\"")
        result = replace(headerSecret, in: result, with: "$1\(placeholder)")
        return result
    }

    /// A response body trimmed to a readable excerpt (whitespace folded, at most `limit`
    /// characters) with its secrets taken out, for an error message.
    public static func excerpt(_ body: Data, limit: Int = 400) -> String {
        let raw = String(decoding: body.prefix(16 * 1024), as: UTF8.self)
        let folded = raw.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
        let clean = text(folded)
        return clean.count > limit ? String(clean.prefix(limit)) + "…" : clean
    }

    private static func replace(_ expression: NSRegularExpression, in text: String, with template: String) -> String {
        expression.stringByReplacingMatches(in: text, range: NSRange(text.startIndex..., in: text), withTemplate: template)
    }
}
