import Foundation

/// Who asked. A restore is only carried out when this user may act in the target project;
/// the identity is checked against Keystone, never trusted from the message alone.
public struct Principal: Codable, Sendable, Hashable {
    public var userId: String
    /// The user's Keystone domain, when the id alone is ambiguous (`domain\username` logins).
    public var userDomain: String?

    public init(userId: String, userDomain: String? = nil) {
        self.userId = userId
        self.userDomain = userDomain
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case userId, userDomain }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownFields(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        userId = try c.text(.userId, maxLength: 255)
        userDomain = try c.optionalText(.userDomain, maxLength: 255)
    }
}

public enum BackupMode: String, Codable, Sendable, CaseIterable {
    /// Read every allocated extent.
    case full
    /// Read only what changed since the last backup; becomes a full (and says so) when the
    /// point it needs is gone.
    case incremental
}

public enum DiskFormat: String, Codable, Sendable, CaseIterable {
    case raw
    case qcow2
}

/// A disk image file (or block device) on the worker's own host.
public struct LocalDisk: Codable, Sendable, Hashable {
    public var name: String
    public var path: String
    public var format: DiskFormat

    public init(name: String, path: String, format: DiskFormat) {
        self.name = name
        self.path = path
        self.format = format
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case name, path, format }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownFields(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.identifier(.name)
        path = try c.absolutePath(.path)
        format = try c.choice(DiskFormat.self, .format)
    }
}

/// A disk that is an RBD image in a configured Ceph cluster.
public struct RBDDisk: Codable, Sendable, Hashable {
    public var name: String
    public var pool: String
    public var image: String

    public init(name: String, pool: String, image: String) {
        self.name = name
        self.pool = pool
        self.image = image
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case name, pool, image }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownFields(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.identifier(.name)
        pool = try c.text(.pool, maxLength: 255)
        image = try c.text(.image, maxLength: 255)
    }
}

/// A Cinder volume read by disk attachment: Lifeboat snapshots it in Cinder, attaches a volume
/// made from that snapshot to its proxy server, reads it there, then detaches and deletes both.
public struct CinderDisk: Codable, Sendable, Hashable {
    public var name: String
    /// The volume's id.
    public var volume: String

    public init(name: String, volume: String) {
        self.name = name
        self.volume = volume
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case name, volume }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownFields(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.identifier(.name)
        volume = try c.identifier(.volume)
    }
}

/// Where a backup reads from, when the requester names it. Without it, the worker resolves
/// the instance through the OpenStack APIs and picks the strategy per disk.
public enum BackupSource: Codable, Sendable, Hashable {
    /// Image files on the worker's host.
    case files(disks: [LocalDisk])
    /// A libvirt domain on a hypervisor reached over SSH; `disks` limits it to some targets (`vda`).
    case libvirt(host: String, domain: String, disks: [String]?)
    /// RBD images in a configured Ceph cluster.
    case rbd(cluster: String, disks: [RBDDisk])
    /// Cinder volumes, read by disk attachment (any Cinder backend).
    case cinder(disks: [CinderDisk])

    public enum Kind: String, CaseIterable, Sendable { case files, libvirt, rbd, cinder }

    public var kind: Kind {
        switch self {
        case .files: .files
        case .libvirt: .libvirt
        case .rbd: .rbd
        case .cinder: .cinder
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case kind, disks, host, domain, cluster }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.choice(Kind.self, .kind) {
        case .files:
            try decoder.rejectUnknownFields(FilesKeys.self)
            let disks = try c.decode([LocalDisk].self, forKey: .disks)
            try Self.checkDiskList(disks.map(\.name), at: decoder.path(CodingKeys.disks))
            self = .files(disks: disks)
        case .libvirt:
            try decoder.rejectUnknownFields(LibvirtKeys.self)
            let disks = try c.decodeIfPresent([String].self, forKey: .disks)
            if let disks {
                for (i, name) in disks.enumerated() { try Validate.identifier(name, at: decoder.path(CodingKeys.disks) + "[\(i)]") }
                try Self.checkDiskList(disks, at: decoder.path(CodingKeys.disks))
            }
            self = .libvirt(host: try c.text(.host, maxLength: 255), domain: try c.text(.domain, maxLength: 255), disks: disks)
        case .rbd:
            try decoder.rejectUnknownFields(RBDKeys.self)
            let disks = try c.decode([RBDDisk].self, forKey: .disks)
            try Self.checkDiskList(disks.map(\.name), at: decoder.path(CodingKeys.disks))
            self = .rbd(cluster: try c.identifier(.cluster), disks: disks)
        case .cinder:
            try decoder.rejectUnknownFields(CinderKeys.self)
            let disks = try c.decode([CinderDisk].self, forKey: .disks)
            try Self.checkDiskList(disks.map(\.name), at: decoder.path(CodingKeys.disks))
            self = .cinder(disks: disks)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind.rawValue, forKey: .kind)
        switch self {
        case .files(let disks):
            try c.encode(disks, forKey: .disks)
        case .libvirt(let host, let domain, let disks):
            try c.encode(host, forKey: .host)
            try c.encode(domain, forKey: .domain)
            try c.encodeIfPresent(disks, forKey: .disks)
        case .rbd(let cluster, let disks):
            try c.encode(cluster, forKey: .cluster)
            try c.encode(disks, forKey: .disks)
        case .cinder(let disks):
            try c.encode(disks, forKey: .disks)
        }
    }

    private enum FilesKeys: String, CodingKey, CaseIterable { case kind, disks }
    private enum LibvirtKeys: String, CodingKey, CaseIterable { case kind, host, domain, disks }
    private enum RBDKeys: String, CodingKey, CaseIterable { case kind, cluster, disks }
    private enum CinderKeys: String, CodingKey, CaseIterable { case kind, disks }

    /// A disk list must name at least one disk, each once.
    static func checkDiskList(_ names: [String], at path: String) throws {
        guard !names.isEmpty else { throw EventDecodingError.invalidValue(path: path, reason: "must name at least one disk") }
        guard names.count <= 64 else { throw EventDecodingError.invalidValue(path: path, reason: "more than 64 disks") }
        guard Set(names).count == names.count else {
            throw EventDecodingError.invalidValue(path: path, reason: "names a disk twice")
        }
    }
}

/// "Back up this instance." Sent by schedulers, portals and Lifeboat's own policies.
public struct BackupRequest: LifeboatMessage, Hashable {
    public static let messageType = "backup.request"
    public static let supportedVersions = 1...1

    /// The `type` field, written with every message so a reader knows what it holds.
    public let type = BackupRequest.messageType

    public var version: Int
    /// The idempotency key: a request sent twice with the same id is one job.
    public var requestId: String
    public var project: String
    public var instance: String
    public var mode: BackupMode
    public var source: BackupSource?
    /// The protection policy that asked for it (retention and schedule come from the policy).
    public var policy: String?
    /// 0 (lowest) to 9; maps onto AMQP message priority.
    public var priority: Int?
    public var labels: [String: String]?
    public var requestedBy: Principal?

    public init(requestId: String, project: String, instance: String, mode: BackupMode, source: BackupSource? = nil,
                policy: String? = nil, priority: Int? = nil, labels: [String: String]? = nil, requestedBy: Principal? = nil) {
        self.version = Self.supportedVersions.upperBound
        self.requestId = requestId
        self.project = project
        self.instance = instance
        self.mode = mode
        self.source = source
        self.policy = policy
        self.priority = priority
        self.labels = labels
        self.requestedBy = requestedBy
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case type, version, requestId, project, instance, mode, source, policy, priority, labels, requestedBy
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownFields(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        requestId = try c.identifier(.requestId)
        project = try c.identifier(.project)
        instance = try c.identifier(.instance)
        mode = try c.choice(BackupMode.self, .mode)
        source = try c.decodeIfPresent(BackupSource.self, forKey: .source)
        policy = try c.optionalIdentifier(.policy)
        priority = try c.decodeIfPresent(Int.self, forKey: .priority)
        if let priority { try Validate.range(priority, 0...9, at: decoder.path(CodingKeys.priority)) }
        labels = try c.optionalLabels(.labels)
        requestedBy = try c.decodeIfPresent(Principal.self, forKey: .requestedBy)
    }
}
