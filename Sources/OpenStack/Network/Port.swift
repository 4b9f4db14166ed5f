/// A Neutron port: a server's interface on a network (`device_id` is the server's id).
public struct Port: Sendable, Codable, Equatable {
    public struct FixedIP: Sendable, Codable, Equatable {
        public var subnetID: String?
        public var ipAddress: String

        enum CodingKeys: String, CodingKey {
            case subnetID = "subnet_id"
            case ipAddress = "ip_address"
        }
    }

    public var id: String
    public var name: String?
    public var networkID: String
    public var macAddress: String?
    public var fixedIPs: [FixedIP]
    public var deviceID: String?
    public var deviceOwner: String?
    public var status: String?
    public var securityGroups: [String]
    public var projectID: String?

    enum CodingKeys: String, CodingKey {
        case id, name, status
        case networkID = "network_id"
        case macAddress = "mac_address"
        case fixedIPs = "fixed_ips"
        case deviceID = "device_id"
        case deviceOwner = "device_owner"
        case securityGroups = "security_groups"
        case projectID = "project_id"
    }
}
