import Foundation

/// A Nova server as `GET /servers/{id}` shows it, with what a backup needs: where it runs
/// (`OS-EXT-SRV-ATTR:host`, `hypervisor_hostname`, and the libvirt domain name
/// `instance_name`: admin only), its flavor (embedded details from microversion 2.47), image,
/// key pair, metadata, tags (2.26), security groups and attached volumes.
public struct Server: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    public var status: String
    public var projectID: String?
    public var userID: String?
    /// The compute host it runs on (admin only).
    public var host: String?
    public var hypervisorHostname: String?
    /// The libvirt domain name, e.g. `instance-0000000a` (admin only).
    public var instanceName: String?
    public var vmState: String?
    public var taskState: String?
    public var powerState: Int?
    public var availabilityZone: String?
    public var flavor: ServerFlavor
    /// The image it was booted from; nil when it boots from a volume (Nova then sends "").
    public var imageID: String?
    public var keyName: String?
    public var metadata: [String: String]
    public var tags: [String]?
    public var securityGroups: [String]
    public var attachedVolumes: [AttachedVolume]
    public var addresses: [String: [Address]]
    public var fault: Fault?
    public var created: String?
    public var updated: String?

    public struct AttachedVolume: Sendable, Codable, Equatable {
        public var id: String
        public var deleteOnTermination: Bool?

        enum CodingKeys: String, CodingKey {
            case id
            case deleteOnTermination = "delete_on_termination"
        }
    }

    public struct Address: Sendable, Codable, Equatable {
        public var addr: String
        public var version: Int?
        public var macAddress: String?
        public var type: String?

        enum CodingKeys: String, CodingKey {
            case addr, version
            case macAddress = "OS-EXT-IPS-MAC:mac_addr"
            case type = "OS-EXT-IPS:type"
        }
    }

    public struct Fault: Sendable, Codable, Equatable {
        public var code: Int?
        public var message: String?
    }

    enum CodingKeys: String, CodingKey {
        case id, name, status, flavor, image, metadata, tags, addresses, fault, created, updated
        case projectID = "tenant_id"
        case userID = "user_id"
        case host = "OS-EXT-SRV-ATTR:host"
        case hypervisorHostname = "OS-EXT-SRV-ATTR:hypervisor_hostname"
        case instanceName = "OS-EXT-SRV-ATTR:instance_name"
        case vmState = "OS-EXT-STS:vm_state"
        case taskState = "OS-EXT-STS:task_state"
        case powerState = "OS-EXT-STS:power_state"
        case availabilityZone = "OS-EXT-AZ:availability_zone"
        case keyName = "key_name"
        case securityGroups = "security_groups"
        case attachedVolumes = "os-extended-volumes:volumes_attached"
    }

    private struct ImageReference: Codable { let id: String }
    private struct SecurityGroupName: Codable { let name: String }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? ""
        status = try c.decode(String.self, forKey: .status)
        projectID = try c.decodeIfPresent(String.self, forKey: .projectID)
        userID = try c.decodeIfPresent(String.self, forKey: .userID)
        host = try c.decodeIfPresent(String.self, forKey: .host)
        hypervisorHostname = try c.decodeIfPresent(String.self, forKey: .hypervisorHostname)
        instanceName = try c.decodeIfPresent(String.self, forKey: .instanceName)
        vmState = try c.decodeIfPresent(String.self, forKey: .vmState)
        taskState = try c.decodeIfPresent(String.self, forKey: .taskState)
        powerState = try c.decodeIfPresent(Int.self, forKey: .powerState)
        availabilityZone = try c.decodeIfPresent(String.self, forKey: .availabilityZone)
        flavor = try c.decode(ServerFlavor.self, forKey: .flavor)
        // "" for a server booted from a volume, {"id": …} otherwise.
        imageID = (try? c.decodeIfPresent(ImageReference.self, forKey: .image))?.id
        keyName = try c.decodeIfPresent(String.self, forKey: .keyName)
        metadata = try c.decodeIfPresent([String: String].self, forKey: .metadata) ?? [:]
        tags = try c.decodeIfPresent([String].self, forKey: .tags)
        securityGroups = try c.decodeIfPresent([SecurityGroupName].self, forKey: .securityGroups)?.map(\.name) ?? []
        attachedVolumes = try c.decodeIfPresent([AttachedVolume].self, forKey: .attachedVolumes) ?? []
        addresses = try c.decodeIfPresent([String: [Address]].self, forKey: .addresses) ?? [:]
        fault = try c.decodeIfPresent(Fault.self, forKey: .fault)
        created = try c.decodeIfPresent(String.self, forKey: .created)
        updated = try c.decodeIfPresent(String.self, forKey: .updated)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(name, forKey: .name)
        try c.encode(status, forKey: .status)
        try c.encodeIfPresent(projectID, forKey: .projectID)
        try c.encodeIfPresent(userID, forKey: .userID)
        try c.encodeIfPresent(host, forKey: .host)
        try c.encodeIfPresent(hypervisorHostname, forKey: .hypervisorHostname)
        try c.encodeIfPresent(instanceName, forKey: .instanceName)
        try c.encodeIfPresent(vmState, forKey: .vmState)
        try c.encodeIfPresent(taskState, forKey: .taskState)
        try c.encodeIfPresent(powerState, forKey: .powerState)
        try c.encodeIfPresent(availabilityZone, forKey: .availabilityZone)
        try c.encode(flavor, forKey: .flavor)
        if let imageID { try c.encode(ImageReference(id: imageID), forKey: .image) } else { try c.encode("", forKey: .image) }
        try c.encodeIfPresent(keyName, forKey: .keyName)
        try c.encode(metadata, forKey: .metadata)
        try c.encodeIfPresent(tags, forKey: .tags)
        try c.encode(securityGroups.map(SecurityGroupName.init), forKey: .securityGroups)
        try c.encode(attachedVolumes, forKey: .attachedVolumes)
        try c.encode(addresses, forKey: .addresses)
        try c.encodeIfPresent(fault, forKey: .fault)
        try c.encodeIfPresent(created, forKey: .created)
        try c.encodeIfPresent(updated, forKey: .updated)
    }
}

/// A server's flavor: its id before microversion 2.47, its embedded details from 2.47 on
/// (when the flavor itself may have been deleted or changed since).
public struct ServerFlavor: Sendable, Codable, Equatable {
    public var id: String?
    public var originalName: String?
    public var vcpus: Int?
    public var ram: Int?
    public var disk: Int?
    public var ephemeral: Int?
    public var swap: Int?
    public var extraSpecs: [String: String]?

    enum CodingKeys: String, CodingKey {
        case id, vcpus, ram, disk, ephemeral, swap
        case originalName = "original_name"
        case extraSpecs = "extra_specs"
    }
}
