/// What `POST /servers` needs to make a server, as a restore does: in the session's project,
/// from an image or from volumes (`block_device_mapping_v2`), with the original's flavor, key
/// pair, metadata and security groups.
public struct ServerCreateRequest: Sendable, Encodable, Equatable {
    public var name: String
    public var flavorRef: String
    public var imageRef: String?
    public var blockDeviceMappings: [BlockDeviceMapping]?
    public var networks: ServerNetworks
    public var keyName: String?
    public var metadata: [String: String]?
    /// Security group names.
    public var securityGroups: [String]?
    public var availabilityZone: String?
    /// Base64 user data.
    public var userData: String?
    /// Microversion 2.52.
    public var tags: [String]?

    public init(name: String, flavorRef: String, imageRef: String? = nil, blockDeviceMappings: [BlockDeviceMapping]? = nil,
                networks: ServerNetworks = .auto, keyName: String? = nil, metadata: [String: String]? = nil,
                securityGroups: [String]? = nil, availabilityZone: String? = nil, userData: String? = nil, tags: [String]? = nil) {
        self.name = name
        self.flavorRef = flavorRef
        self.imageRef = imageRef
        self.blockDeviceMappings = blockDeviceMappings
        self.networks = networks
        self.keyName = keyName
        self.metadata = metadata
        self.securityGroups = securityGroups
        self.availabilityZone = availabilityZone
        self.userData = userData
        self.tags = tags
    }

    private enum CodingKeys: String, CodingKey {
        case name, flavorRef, imageRef, networks, metadata, tags
        case blockDeviceMappings = "block_device_mapping_v2"
        case keyName = "key_name"
        case securityGroups = "security_groups"
        case availabilityZone = "availability_zone"
        case userData = "user_data"
    }

    private struct GroupName: Encodable { let name: String }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(flavorRef, forKey: .flavorRef)
        try c.encodeIfPresent(imageRef, forKey: .imageRef)
        try c.encodeIfPresent(blockDeviceMappings, forKey: .blockDeviceMappings)
        try c.encode(networks, forKey: .networks)
        try c.encodeIfPresent(keyName, forKey: .keyName)
        try c.encodeIfPresent(metadata, forKey: .metadata)
        try c.encodeIfPresent(securityGroups?.map(GroupName.init), forKey: .securityGroups)
        try c.encodeIfPresent(availabilityZone, forKey: .availabilityZone)
        try c.encodeIfPresent(userData, forKey: .userData)
        try c.encodeIfPresent(tags, forKey: .tags)
    }
}

/// A server's networks: none at all, Nova's choice, or a list (microversion 2.37 for the first two).
public enum ServerNetworks: Sendable, Encodable, Equatable {
    case none
    case auto
    case attached([NetworkAttachment])

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .none: try c.encode("none")
        case .auto: try c.encode("auto")
        case .attached(let list): try c.encode(list)
        }
    }
}

/// One network of a new server: a network (with a fixed address, optionally) or an existing port.
public struct NetworkAttachment: Sendable, Encodable, Equatable {
    public var networkID: String?
    public var portID: String?
    public var fixedIP: String?

    public static func network(_ id: String, fixedIP: String? = nil) -> NetworkAttachment { .init(networkID: id, portID: nil, fixedIP: fixedIP) }
    public static func port(_ id: String) -> NetworkAttachment { .init(networkID: nil, portID: id, fixedIP: nil) }

    private enum CodingKeys: String, CodingKey {
        case networkID = "uuid"
        case portID = "port"
        case fixedIP = "fixed_ip"
    }
}

/// One disk of a new server in `block_device_mapping_v2`: e.g. boot from a restored volume
/// (`sourceType: "volume", destinationType: "volume", bootIndex: 0`).
public struct BlockDeviceMapping: Sendable, Encodable, Equatable {
    public var bootIndex: Int?
    public var uuid: String?
    /// "image", "volume", "snapshot" or "blank".
    public var sourceType: String
    /// "volume" or "local".
    public var destinationType: String?
    /// GiB, for a volume Nova creates.
    public var volumeSize: Int?
    public var deleteOnTermination: Bool?
    public var deviceName: String?
    public var diskBus: String?
    public var volumeType: String?
    public var tag: String?

    public init(bootIndex: Int? = nil, uuid: String? = nil, sourceType: String, destinationType: String? = nil,
                volumeSize: Int? = nil, deleteOnTermination: Bool? = nil, deviceName: String? = nil,
                diskBus: String? = nil, volumeType: String? = nil, tag: String? = nil) {
        self.bootIndex = bootIndex
        self.uuid = uuid
        self.sourceType = sourceType
        self.destinationType = destinationType
        self.volumeSize = volumeSize
        self.deleteOnTermination = deleteOnTermination
        self.deviceName = deviceName
        self.diskBus = diskBus
        self.volumeType = volumeType
        self.tag = tag
    }

    private enum CodingKeys: String, CodingKey {
        case uuid, tag
        case bootIndex = "boot_index"
        case sourceType = "source_type"
        case destinationType = "destination_type"
        case volumeSize = "volume_size"
        case deleteOnTermination = "delete_on_termination"
        case deviceName = "device_name"
        case diskBus = "disk_bus"
        case volumeType = "volume_type"
    }
}
