/// A Cinder volume (`GET /volumes/{id}`), with where it lives: `os-vol-host-attr:host`
/// (admin only) names the volume service, backend and pool, `host@backend#pool`, which is what
/// picks the backup strategy (an RBD backend is read through Ceph).
public struct Volume: Sendable, Codable, Equatable {
    public var id: String
    public var name: String?
    public var description: String?
    /// creating, available, in-use, error, deleting, backing-up, restoring-backup…
    public var status: String
    /// GiB.
    public var size: Int
    public var volumeType: String?
    public var host: String?
    public var projectID: String?
    public var userID: String?
    public var availabilityZone: String?
    public var bootable: Bool
    public var encrypted: Bool?
    public var multiattach: Bool?
    public var snapshotID: String?
    public var sourceVolumeID: String?
    public var metadata: [String: String]
    public var attachments: [Attachment]
    public var createdAt: String?

    public struct Attachment: Sendable, Codable, Equatable {
        public var serverID: String?
        public var attachmentID: String?
        public var device: String?
        public var hostName: String?

        enum CodingKeys: String, CodingKey {
            case device
            case serverID = "server_id"
            case attachmentID = "attachment_id"
            case hostName = "host_name"
        }
    }

    /// Where the volume lives, parsed from `host` (nil without admin rights).
    public var location: VolumeLocation? { host.map(VolumeLocation.init(parsing:)) }

    enum CodingKeys: String, CodingKey {
        case id, name, description, status, size, bootable, encrypted, multiattach, metadata, attachments
        case volumeType = "volume_type"
        case host = "os-vol-host-attr:host"
        case projectID = "os-vol-tenant-attr:tenant_id"
        case userID = "user_id"
        case availabilityZone = "availability_zone"
        case snapshotID = "snapshot_id"
        case sourceVolumeID = "source_volid"
        case createdAt = "created_at"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        name = try c.decodeIfPresent(String.self, forKey: .name)
        description = try c.decodeIfPresent(String.self, forKey: .description)
        status = try c.decode(String.self, forKey: .status)
        size = try c.decode(Int.self, forKey: .size)
        volumeType = try c.decodeIfPresent(String.self, forKey: .volumeType)
        host = try c.decodeIfPresent(String.self, forKey: .host)
        projectID = try c.decodeIfPresent(String.self, forKey: .projectID)
        userID = try c.decodeIfPresent(String.self, forKey: .userID)
        availabilityZone = try c.decodeIfPresent(String.self, forKey: .availabilityZone)
        // Cinder sends "true"/"false" as strings.
        if let text = try? c.decodeIfPresent(String.self, forKey: .bootable) {
            bootable = text.lowercased() == "true"
        } else {
            bootable = try c.decodeIfPresent(Bool.self, forKey: .bootable) ?? false
        }
        encrypted = try c.decodeIfPresent(Bool.self, forKey: .encrypted)
        multiattach = try c.decodeIfPresent(Bool.self, forKey: .multiattach)
        snapshotID = try c.decodeIfPresent(String.self, forKey: .snapshotID)
        sourceVolumeID = try c.decodeIfPresent(String.self, forKey: .sourceVolumeID)
        metadata = try c.decodeIfPresent([String: String].self, forKey: .metadata) ?? [:]
        attachments = try c.decodeIfPresent([Attachment].self, forKey: .attachments) ?? []
        createdAt = try c.decodeIfPresent(String.self, forKey: .createdAt)
    }
}

/// Cinder's `host@backend#pool`: the volume service's host, the backend (a section of
/// cinder.conf, `volume_backend_name` by default), and the pool within it.
public struct VolumeLocation: Sendable, Equatable, Hashable {
    public var host: String
    public var backend: String?
    public var pool: String?

    public init(host: String, backend: String?, pool: String?) {
        self.host = host
        self.backend = backend
        self.pool = pool
    }

    public init(parsing text: String) {
        var rest = Substring(text)
        if let hash = rest.firstIndex(of: "#") {
            pool = String(rest[rest.index(after: hash)...])
            rest = rest[..<hash]
        }
        if let at = rest.firstIndex(of: "@") {
            backend = String(rest[rest.index(after: at)...])
            rest = rest[..<at]
        }
        host = String(rest)
    }
}
