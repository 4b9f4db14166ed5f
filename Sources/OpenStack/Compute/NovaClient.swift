import Foundation

/// Nova's compute API (v2.1) at the highest microversion both Nova and this client know,
/// negotiated when the client is made and sent on every request (`OpenStack-API-Version:
/// compute X.Y`). Operations that need a newer microversion than negotiated say so.
public struct NovaClient: Sendable {
    /// The newest microversion whose answers this client decodes. 2.92 stops Nova generating
    /// key pairs, which restores rely on when no public key is given.
    public static let newestSupported = Microversion(2, 90)

    /// The microversion every request is sent with.
    public let microversion: Microversion
    /// The newest one the service offers.
    public let serviceMaximum: Microversion
    let api: ServiceConnection

    /// Finds Nova in the catalog (or at `endpoint`) and negotiates the microversion.
    public init(session: KeystoneSession, interface: String? = nil, region: String? = nil, endpoint: URL? = nil,
                highest: Microversion = NovaClient.newestSupported) throws {
        let base = try endpoint ?? session.endpoint(for: "compute", interface: interface, region: region)
        var api = ServiceConnection(session: session, service: "Nova", base: base)
        let (minimum, maximum) = try Self.versionRange(api)
        guard minimum <= highest else {
            throw OpenStackError.microversionUnsupported(service: "Nova", needed: "at most \(highest)",
                                                         available: "\(minimum) to \(maximum)")
        }
        microversion = min(maximum, highest)
        serviceMaximum = maximum
        api.headers["OpenStack-API-Version"] = "compute \(microversion)"
        api.headers["X-OpenStack-Nova-API-Version"] = microversion.description
        self.api = api
    }

    /// Nova's v2.1 version document: at the endpoint itself, or (for endpoints that end in a
    /// project id, where that document is not served) in the root's list of versions.
    private static func versionRange(_ api: ServiceConnection) throws -> (Microversion, Microversion) {
        func fetch(_ url: URL) throws -> VersionDocument {
            try api.send(HTTPRequest(.get, url, headers: ["Accept": "application/json"]), as: VersionDocument.self)
        }
        var version: VersionDocument.Version?
        if let document = try? fetch(api.base) {
            version = document.version ?? document.versions?.first { $0.id == "v2.1" }
        }
        if version == nil, let root = URL(string: "/", relativeTo: api.base)?.absoluteURL {
            version = try fetch(root).versions?.first { $0.id == "v2.1" }
        }
        // A Nova without microversions (or a version document without them) speaks 2.1.
        guard let version, let maximum = version.version.flatMap(Microversion.init) else {
            return (Microversion(2, 1), Microversion(2, 1))
        }
        return (version.min_version.flatMap(Microversion.init) ?? Microversion(2, 1), maximum)
    }

    /// Throws unless the negotiated microversion is at least `needed`.
    public func require(_ needed: Microversion, for operation: String) throws {
        guard microversion >= needed else {
            throw OpenStackError.microversionUnsupported(service: "Nova (\(operation))", needed: needed.description,
                                                         available: "up to \(microversion)")
        }
    }

    // MARK: Servers

    public func server(_ id: String) throws -> Server {
        struct Envelope: Decodable { let server: Server }
        return try api.get("/servers/\(QueryString.segment(id))", as: Envelope.self).server
    }

    /// Servers with details, every page. `allProjects` (admin) lists every project's servers;
    /// `filters` are Nova's query filters (`name`, `host`, `project_id`…).
    public func servers(allProjects: Bool = false, filters: [String: String] = [:]) throws -> [Server] {
        struct Page: Decodable {
            let servers: [Server]
            let servers_links: [Link]?
        }
        var query: [(String, String?)] = filters.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        if allProjects { query.append(("all_tenants", "1")) }
        var url = try api.url("/servers/detail", query)
        var servers: [Server] = []
        while true {
            let page = try api.send(HTTPRequest(.get, url, headers: api.headers), as: Page.self)
            servers += page.servers
            guard let next = page.servers_links?.first(where: { $0.rel == "next" }), !page.servers.isEmpty else { return servers }
            url = try api.follow(next.href)
        }
    }

    /// Creates a server in the session's project and returns its id (it starts in BUILD; see
    /// `waitForServer`). `networks: .none` or `.auto` needs microversion 2.37, tags 2.52.
    public func createServer(_ request: ServerCreateRequest) throws -> String {
        switch request.networks {
        case .none, .auto: try require(Microversion(2, 37), for: "networks none/auto")
        case .attached: break
        }
        if request.tags != nil { try require(Microversion(2, 52), for: "tags on create") }
        struct Body: Encodable { let server: ServerCreateRequest }
        // Only the id is read: the answer also holds the new server's admin password.
        struct Created: Decodable {
            struct Inner: Decodable { let id: String }
            let server: Inner
        }
        return try api.send(try api.request(.post, "/servers", json: Body(server: request)), as: Created.self).server.id
    }

    /// Deletes a server; false when it was gone already.
    @discardableResult
    public func deleteServer(_ id: String) throws -> Bool {
        try api.delete("/servers/\(QueryString.segment(id))")
    }

    /// Waits until the server is `status` (ACTIVE by default); throws when it goes to ERROR
    /// (with Nova's fault message) or after `timeout` seconds.
    @discardableResult
    public func waitForServer(_ id: String, status: String = "ACTIVE", timeout: Double = 300) throws -> Server {
        try StatusWait.until(kind: "server", id: id, wanted: [status], failing: ["ERROR"], timeout: timeout) {
            let server = try server(id)
            return .init(value: server, status: server.status, reason: server.fault?.message)
        }
    }

    /// Waits until the server no longer exists.
    public func waitForServerDeletion(_ id: String, timeout: Double = 300) throws {
        try StatusWait.untilGone(kind: "server", id: id, failing: ["ERROR"], timeout: timeout) {
            try statusOrGone { try server(id).status }
        }
    }

    // MARK: Hypervisors

    /// The compute hosts (admin).
    public func computeHosts() throws -> [ComputeHost] {
        struct Envelope: Decodable { let hypervisors: [ComputeHost] }
        return try api.get("/os-hypervisors/detail", as: Envelope.self).hypervisors
    }

    // MARK: Flavors

    public func flavor(_ id: String) throws -> Flavor {
        struct Envelope: Decodable { let flavor: Flavor }
        return try api.get("/flavors/\(QueryString.segment(id))", as: Envelope.self).flavor
    }

    public func flavors() throws -> [Flavor] {
        struct Envelope: Decodable { let flavors: [Flavor] }
        return try api.get("/flavors/detail", as: Envelope.self).flavors
    }

    // MARK: Key pairs

    /// A key pair of the session's user, or of `userID` (admin, microversion 2.10).
    public func keyPair(named name: String, userID: String? = nil) throws -> KeyPair {
        if userID != nil { try require(Microversion(2, 10), for: "key pairs of other users") }
        struct Envelope: Decodable { let keypair: KeyPair }
        return try api.get("/os-keypairs/\(QueryString.segment(name))", userID.map { [("user_id", $0)] } ?? [], as: Envelope.self).keypair
    }

    /// Creates (imports `publicKey`, or lets Nova generate one: the answer then holds the
    /// private key) a key pair for the session's user or, as admin, for `userID` (2.10).
    public func createKeyPair(named name: String, publicKey: String? = nil, type: String? = nil, userID: String? = nil) throws -> KeyPair {
        if userID != nil { try require(Microversion(2, 10), for: "key pairs of other users") }
        if type != nil { try require(Microversion(2, 2), for: "key pair types") }
        if publicKey == nil, microversion >= Microversion(2, 92) {
            throw OpenStackError.microversionUnsupported(service: "Nova (generated key pairs)", needed: "below 2.92",
                                                         available: microversion.description)
        }
        struct Envelope: Decodable { let keypair: KeyPair }
        let body = KeyPairCreate(keypair: .init(name: name, public_key: publicKey, type: type, user_id: userID))
        return try api.send(try api.request(.post, "/os-keypairs", json: body), as: Envelope.self).keypair
    }

    /// Deletes a key pair (of `userID`, as admin); false when it was gone already.
    @discardableResult
    public func deleteKeyPair(named name: String, userID: String? = nil) throws -> Bool {
        if userID != nil { try require(Microversion(2, 10), for: "key pairs of other users") }
        return try api.delete("/os-keypairs/\(QueryString.segment(name))", userID.map { [("user_id", $0)] } ?? [])
    }

    // MARK: Volume attachments

    public func volumeAttachments(ofServer serverID: String) throws -> [VolumeAttachment] {
        struct Envelope: Decodable { let volumeAttachments: [VolumeAttachment] }
        return try api.get("/servers/\(QueryString.segment(serverID))/os-volume_attachments", as: Envelope.self).volumeAttachments
    }

    /// Attaches a volume (asynchronously: the volume turns `in-use` when done).
    @discardableResult
    public func attachVolume(_ volumeID: String, toServer serverID: String, device: String? = nil) throws -> VolumeAttachment {
        struct Body: Encodable {
            struct Inner: Encodable { let volumeId: String; let device: String? }
            let volumeAttachment: Inner
        }
        struct Envelope: Decodable { let volumeAttachment: VolumeAttachment }
        let request = try api.request(.post, "/servers/\(QueryString.segment(serverID))/os-volume_attachments",
                                      json: Body(volumeAttachment: .init(volumeId: volumeID, device: device)))
        return try api.send(request, as: Envelope.self).volumeAttachment
    }

    /// Detaches a volume (asynchronously); false when it was not attached.
    @discardableResult
    public func detachVolume(_ volumeID: String, fromServer serverID: String) throws -> Bool {
        try api.delete("/servers/\(QueryString.segment(serverID))/os-volume_attachments/\(QueryString.segment(volumeID))")
    }
}
