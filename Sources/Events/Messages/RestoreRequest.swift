import Foundation

/// Where a restore writes.
public enum RestoreTarget: Codable, Sendable, Hashable {
    /// Disk images in a directory on the worker's host.
    case files(directory: String, format: DiskFormat)
    /// Disk files recreated on a hypervisor over SSH and the domain defined there.
    case libvirt(host: String, name: String?, storageDirectory: String?, start: Bool)
    /// New RBD images (an existing image is only overwritten when `overwrite` is true).
    case rbd(cluster: String, pool: String, imagePrefix: String?, overwrite: Bool)
    /// A new OpenStack server in `project`; its disks as Cinder volumes (the default) or Glance images.
    case instance(project: String, name: String?, flavor: String?, networks: [String]?, keypair: String?, disksAs: InstanceDisks? = nil)

    /// Where a new server's disks go. `volumes`: Cinder volumes of the target project written
    /// through librbd (their backend must be a Ceph cluster Lifeboat reaches), the server booted
    /// from the root one. `images`: Glance images uploaded through Glance's API (any backend),
    /// the server booted from the root one and the others made into volumes by Nova.
    public enum InstanceDisks: String, Codable, Sendable, Hashable, CaseIterable { case volumes, images }

    public enum Kind: String, CaseIterable, Sendable { case files, libvirt, rbd, instance }

    public var kind: Kind {
        switch self {
        case .files: .files
        case .libvirt: .libvirt
        case .rbd: .rbd
        case .instance: .instance
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, directory, format, host, name, storageDirectory, start, cluster, pool, imagePrefix, overwrite
        case project, flavor, networks, keypair, disksAs
    }

    private enum FilesKeys: String, CodingKey, CaseIterable { case kind, directory, format }
    private enum LibvirtKeys: String, CodingKey, CaseIterable { case kind, host, name, storageDirectory, start }
    private enum RBDKeys: String, CodingKey, CaseIterable { case kind, cluster, pool, imagePrefix, overwrite }
    private enum InstanceKeys: String, CodingKey, CaseIterable { case kind, project, name, flavor, networks, keypair, disksAs }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.choice(Kind.self, .kind) {
        case .files:
            try decoder.rejectUnknownFields(FilesKeys.self)
            self = .files(directory: try c.absolutePath(.directory), format: try c.choice(DiskFormat.self, .format))
        case .libvirt:
            try decoder.rejectUnknownFields(LibvirtKeys.self)
            let storage = try c.decodeIfPresent(String.self, forKey: .storageDirectory)
            if let storage { try Validate.absolutePath(storage, at: decoder.path(CodingKeys.storageDirectory)) }
            self = .libvirt(host: try c.text(.host, maxLength: 255), name: try c.optionalText(.name, maxLength: 255),
                            storageDirectory: storage, start: try c.decodeIfPresent(Bool.self, forKey: .start) ?? false)
        case .rbd:
            try decoder.rejectUnknownFields(RBDKeys.self)
            self = .rbd(cluster: try c.identifier(.cluster), pool: try c.text(.pool, maxLength: 255),
                        imagePrefix: try c.optionalText(.imagePrefix, maxLength: 200),
                        overwrite: try c.decodeIfPresent(Bool.self, forKey: .overwrite) ?? false)
        case .instance:
            try decoder.rejectUnknownFields(InstanceKeys.self)
            let networks = try c.decodeIfPresent([String].self, forKey: .networks)
            for (i, network) in (networks ?? []).enumerated() {
                try Validate.text(network, at: decoder.path(CodingKeys.networks) + "[\(i)]", maxLength: 255)
            }
            self = .instance(project: try c.identifier(.project), name: try c.optionalText(.name, maxLength: 255),
                             flavor: try c.optionalText(.flavor, maxLength: 255), networks: networks,
                             keypair: try c.optionalText(.keypair, maxLength: 255),
                             disksAs: try c.decodeIfPresent(String.self, forKey: .disksAs).map { _ in try c.choice(InstanceDisks.self, .disksAs) })
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind.rawValue, forKey: .kind)
        switch self {
        case .files(let directory, let format):
            try c.encode(directory, forKey: .directory)
            try c.encode(format, forKey: .format)
        case .libvirt(let host, let name, let storageDirectory, let start):
            try c.encode(host, forKey: .host)
            try c.encodeIfPresent(name, forKey: .name)
            try c.encodeIfPresent(storageDirectory, forKey: .storageDirectory)
            try c.encode(start, forKey: .start)
        case .rbd(let cluster, let pool, let imagePrefix, let overwrite):
            try c.encode(cluster, forKey: .cluster)
            try c.encode(pool, forKey: .pool)
            try c.encodeIfPresent(imagePrefix, forKey: .imagePrefix)
            try c.encode(overwrite, forKey: .overwrite)
        case .instance(let project, let name, let flavor, let networks, let keypair, let disksAs):
            try c.encode(project, forKey: .project)
            try c.encodeIfPresent(name, forKey: .name)
            try c.encodeIfPresent(flavor, forKey: .flavor)
            try c.encodeIfPresent(networks, forKey: .networks)
            try c.encodeIfPresent(keypair, forKey: .keypair)
            try c.encodeIfPresent(disksAs, forKey: .disksAs)
        }
    }
}

/// "Restore this backup there."
public struct RestoreRequest: LifeboatMessage, Hashable {
    public static let messageType = "restore.request"
    public static let supportedVersions = 1...1

    /// The `type` field, written with every message so a reader knows what it holds.
    public let type = RestoreRequest.messageType

    public var version: Int
    public var requestId: String
    /// The project the backup belongs to (results are routed by it).
    public var project: String
    public var backupId: String
    public var target: RestoreTarget
    /// Restore only these disks; all when absent.
    public var disks: [String]?
    /// Required: a restore acts on a project, so Lifeboat checks who asks.
    public var requestedBy: Principal
    /// 0 (lowest) to 9; absent: `defaultPriority`.
    public var priority: Int?

    /// A restore has somebody waiting for it: unless told otherwise its tasks are urgent, taken
    /// alongside the night's backup backlog instead of behind it.
    public static let defaultPriority = 7

    public init(requestId: String, project: String, backupId: String, target: RestoreTarget, disks: [String]? = nil, requestedBy: Principal,
                priority: Int? = nil) {
        self.version = Self.supportedVersions.upperBound
        self.requestId = requestId
        self.project = project
        self.backupId = backupId
        self.target = target
        self.disks = disks
        self.requestedBy = requestedBy
        self.priority = priority
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case type, version, requestId, project, backupId, target, disks, requestedBy, priority }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownFields(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        requestId = try c.identifier(.requestId)
        project = try c.identifier(.project)
        backupId = try c.identifier(.backupId)
        target = try c.decode(RestoreTarget.self, forKey: .target)
        disks = try c.decodeIfPresent([String].self, forKey: .disks)
        if let disks {
            for (i, name) in disks.enumerated() { try Validate.identifier(name, at: decoder.path(CodingKeys.disks) + "[\(i)]") }
            try BackupSource.checkDiskList(disks, at: decoder.path(CodingKeys.disks))
        }
        requestedBy = try c.decode(Principal.self, forKey: .requestedBy)
        priority = try c.decodeIfPresent(Int.self, forKey: .priority)
        if let priority { try Validate.range(priority, 0...9, at: decoder.path(CodingKeys.priority)) }
    }
}
