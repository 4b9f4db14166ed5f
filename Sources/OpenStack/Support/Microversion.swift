/// An API microversion ("2.37"): what Nova and Cinder negotiate per request through the
/// `OpenStack-API-Version` header.
public struct Microversion: Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
    public let major: Int
    public let minor: Int

    public init(_ major: Int, _ minor: Int) {
        self.major = major
        self.minor = minor
    }

    /// Parses "2.93"; nil for anything else (Nova's v2.0 reports "").
    public init?(_ text: String) {
        let parts = text.split(separator: ".")
        guard parts.count == 2, let major = Int(parts[0]), let minor = Int(parts[1]) else { return nil }
        self.init(major, minor)
    }

    public var description: String { "\(major).\(minor)" }

    public static func < (lhs: Microversion, rhs: Microversion) -> Bool {
        (lhs.major, lhs.minor) < (rhs.major, rhs.minor)
    }
}

/// A service's version document: `{"version": {...}}` at a versioned endpoint, or
/// `{"versions": [...]}` at the root.
struct VersionDocument: Decodable {
    struct Version: Decodable {
        let id: String
        let status: String?
        let version: String?
        let min_version: String?
    }

    let version: Version?
    let versions: [Version]?
}
