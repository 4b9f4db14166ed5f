import Foundation

/// Query strings built by hand: `URLComponents` leaves `+` and `;` as they are, which some
/// services read as a space or a separator; here everything but RFC 3986's unreserved
/// characters is escaped. A nil value gives a bare name (`&effective`).
enum QueryString {
    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? text
    }

    static func url(_ base: URL, _ items: [(String, String?)]) throws -> URL {
        guard !items.isEmpty else { return base }
        let query = items.map { name, value in value.map { "\(escape(name))=\(escape($0))" } ?? escape(name) }.joined(separator: "&")
        let separator = base.absoluteString.contains("?") ? "&" : "?"
        guard let url = URL(string: base.absoluteString + separator + query) else {
            throw OpenStackError.configuration("cannot build a URL from \(Redaction.url(base.absoluteString))")
        }
        return url
    }

    /// A path segment with `/` and everything else unsafe escaped (names chosen by users).
    static func segment(_ text: String) -> String { escape(text) }
}
