import Foundation

/// Where and as whom to log in to an OpenStack cloud: what an operator already keeps in
/// clouds.yaml or in `OS_*` variables (see `CloudConfiguration.load`). Printing it never shows
/// the password.
public struct CloudConfiguration: Sendable, Equatable, CustomStringConvertible {
    /// Keystone's v3 URL, e.g. `https://keystone.example:5000/v3` (`/v3` is added when missing).
    public var authURL: String
    public var username: String?
    public var userID: String?
    public var password: Secret
    public var userDomainName: String?
    public var userDomainID: String?
    public var projectName: String?
    public var projectID: String?
    public var projectDomainName: String?
    public var projectDomainID: String?
    public var regionName: String?
    /// Which endpoints of the catalog to use: `public`, `internal` or `admin`.
    public var interface: String
    public var tls: TLSOptions
    /// The clouds.yaml entry this came from (`nil` for the environment or code).
    public var cloudName: String?

    public init(authURL: String, username: String? = nil, userID: String? = nil, password: Secret,
                userDomainName: String? = nil, userDomainID: String? = nil,
                projectName: String? = nil, projectID: String? = nil,
                projectDomainName: String? = nil, projectDomainID: String? = nil,
                regionName: String? = nil, interface: String = "public", tls: TLSOptions = TLSOptions(),
                cloudName: String? = nil) {
        self.authURL = authURL
        self.username = username
        self.userID = userID
        self.password = password
        self.userDomainName = userDomainName
        self.userDomainID = userDomainID
        self.projectName = projectName
        self.projectID = projectID
        self.projectDomainName = projectDomainName
        self.projectDomainID = projectDomainID
        self.regionName = regionName
        self.interface = Self.normalisedInterface(interface)
        self.tls = tls
        self.cloudName = cloudName
    }

    /// The same configuration with the password read from a file (Lifeboat's way of passing
    /// secrets: never on a command line or in the environment).
    public func withPassword(fromFile path: String) throws -> CloudConfiguration {
        var copy = self
        copy.password = try Secret(contentsOfFile: path)
        return copy
    }

    /// The user as Keystone should see it: `domain\name` split (an explicit user domain wins
    /// over the prefix), the domain defaulting to `Default`.
    public var user: KeystoneReference {
        if let userID { return KeystoneReference(id: userID) }
        let qualified = QualifiedUserName(parsing: username ?? "")
        if let domain = qualified.domain, userDomainName == nil, userDomainID == nil {
            return KeystoneReference(name: qualified.name, domainName: domain)
        }
        let defaulted = userDomainName == nil && userDomainID == nil
        return KeystoneReference(name: qualified.name, domainName: defaulted ? "Default" : userDomainName, domainID: userDomainID)
    }

    /// The project to scope to, if any. Its domain: as configured, else the user's (a user of
    /// a second domain works in that domain's projects, which is what `domain\username`
    /// means), else `Default`.
    public var project: KeystoneReference? {
        if let projectID { return KeystoneReference(id: projectID) }
        guard let projectName else { return nil }
        if projectDomainName != nil || projectDomainID != nil {
            return KeystoneReference(name: projectName, domainName: projectDomainName, domainID: projectDomainID)
        }
        let user = self.user
        if user.domainName == nil, user.domainID == nil { return KeystoneReference(name: projectName, domainName: "Default") }
        return KeystoneReference(name: projectName, domainName: user.domainName, domainID: user.domainID)
    }

    /// The Keystone v3 base URL: the configured one, with `/v3` appended when it names the
    /// server's root (openstacksdk discovers it; every Keystone serves v3 there).
    public var identityURL: URL {
        get throws {
            var text = authURL
            while text.hasSuffix("/") { text.removeLast() }
            if !text.hasSuffix("/v3") {
                guard !text.hasSuffix("/v2.0") else {
                    throw OpenStackError.configuration("auth URL \(authURL) names Keystone v2.0; Lifeboat speaks v3")
                }
                text += "/v3"
            }
            guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https" else {
                throw OpenStackError.configuration("auth URL \(Redaction.url(authURL)) is not an http(s) URL")
            }
            return url
        }
    }

    /// Who logs in, for messages: `alice in domain lifeboat-domain2, project alice-project`.
    public var principal: String {
        let user = self.user
        var text = user.id.map { "user \($0)" } ?? (user.name ?? "?")
        if let domain = user.domainName ?? user.domainID { text += " in domain \(domain)" }
        if let project = projectName ?? projectID { text += ", project \(project)" }
        return text
    }

    public var description: String {
        var parts = ["auth \(Redaction.url(authURL))", principal, "password \(password)", "interface \(interface)"]
        if let cloudName { parts.insert("cloud \(cloudName)", at: 0) }
        if let regionName { parts.append("region \(regionName)") }
        if let bundle = tls.caBundlePath { parts.append("CA \(bundle)") }
        if !tls.verifyPeer { parts.append("insecure") }
        return parts.joined(separator: ", ")
    }

    /// `publicURL` (Keystone v2 spelling, still in old configurations) is `public`.
    static func normalisedInterface(_ text: String) -> String {
        let lower = text.lowercased()
        return lower.hasSuffix("url") ? String(lower.dropLast(3)) : lower
    }
}

/// A user or project as Keystone's auth body names it: by id, or by name within a domain
/// (itself by name or id).
public struct KeystoneReference: Sendable, Equatable {
    public var name: String?
    public var id: String?
    public var domainName: String?
    public var domainID: String?

    public init(name: String? = nil, id: String? = nil, domainName: String? = nil, domainID: String? = nil) {
        self.name = name
        self.id = id
        self.domainName = domainName
        self.domainID = domainID
    }
}
