/// A Neutron security group with its rules: what a restore recreates or maps by name.
public struct SecurityGroup: Sendable, Codable, Equatable {
    public struct Rule: Sendable, Codable, Equatable {
        public var id: String
        /// ingress or egress.
        public var direction: String
        /// IPv4 or IPv6.
        public var ethertype: String
        public var proto: String?
        public var portRangeMin: Int?
        public var portRangeMax: Int?
        public var remoteIPPrefix: String?
        public var remoteGroupID: String?
        public var description: String?

        enum CodingKeys: String, CodingKey {
            case id, direction, ethertype, description
            case proto = "protocol"
            case portRangeMin = "port_range_min"
            case portRangeMax = "port_range_max"
            case remoteIPPrefix = "remote_ip_prefix"
            case remoteGroupID = "remote_group_id"
        }
    }

    public var id: String
    public var name: String
    public var description: String?
    public var projectID: String?
    public var rules: [Rule]

    enum CodingKeys: String, CodingKey {
        case id, name, description
        case projectID = "project_id"
        case rules = "security_group_rules"
    }
}
