import Foundation

/// What Keystone says about a token (`token` in the body of `POST /v3/auth/tokens`): who, for
/// which project, with which roles, until when, and the catalog. The token itself travels in
/// a header and is kept by `KeystoneSession`, not here, so this can be shown freely.
public struct TokenDetails: Sendable, Codable, Equatable {
    public struct Named: Sendable, Codable, Equatable {
        public var id: String
        public var name: String?
    }

    public struct Scoped: Sendable, Codable, Equatable {
        public var id: String
        public var name: String?
        public var domain: Named?
    }

    public var user: Scoped
    public var project: Scoped?
    public var roles: [Named]?
    public var expiresAt: Date
    public var issuedAt: Date?
    public var catalog: ServiceCatalog?

    enum CodingKeys: String, CodingKey {
        case user, project, roles, catalog
        case expiresAt = "expires_at"
        case issuedAt = "issued_at"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        user = try container.decode(Scoped.self, forKey: .user)
        project = try container.decodeIfPresent(Scoped.self, forKey: .project)
        roles = try container.decodeIfPresent([Named].self, forKey: .roles)
        catalog = try container.decodeIfPresent(ServiceCatalog.self, forKey: .catalog)
        expiresAt = try KeystoneTime.decode(container, .expiresAt)
        issuedAt = try container.decodeIfPresent(String.self, forKey: .issuedAt).flatMap(KeystoneTime.parse)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(user, forKey: .user)
        try container.encodeIfPresent(project, forKey: .project)
        try container.encodeIfPresent(roles, forKey: .roles)
        try container.encodeIfPresent(catalog, forKey: .catalog)
        try container.encode(KeystoneTime.format(expiresAt), forKey: .expiresAt)
        try container.encodeIfPresent(issuedAt.map(KeystoneTime.format), forKey: .issuedAt)
    }

    /// The role names, e.g. ["admin", "member", "reader"].
    public var roleNames: [String] { (roles ?? []).compactMap(\.name) }
}

/// Keystone writes times as `2026-11-28T01:42:18.000000Z`: ISO 8601 with microseconds, which
/// Foundation's ISO 8601 parser does not take; the fraction is cut before parsing.
enum KeystoneTime {
    static func parse(_ text: String) -> Date? {
        var text = text
        if let dot = text.firstIndex(of: ".") {
            let rest = text[text.index(after: dot)...]
            let zone = rest.drop { $0.isNumber }
            text = String(text[..<dot]) + zone
        }
        if !text.hasSuffix("Z"), !text.contains("+"), text.filter({ $0 == "-" }).count == 2 { text += "Z" }
        return ISO8601DateFormatter().date(from: text)
    }

    static func format(_ date: Date) -> String { ISO8601DateFormatter().string(from: date) }

    static func decode<Key: CodingKey>(_ container: KeyedDecodingContainer<Key>, _ key: Key) throws -> Date {
        let text = try container.decode(String.self, forKey: key)
        guard let date = parse(text) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "not a time: \(text)")
        }
        return date
    }
}
