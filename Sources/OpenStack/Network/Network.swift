/// A Neutron network (`GET /v2.0/networks`).
public struct Network: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    public var status: String?
    public var projectID: String?
    public var shared: Bool?
    public var isExternal: Bool?
    public var adminStateUp: Bool?
    public var subnets: [String]
    public var mtu: Int?

    enum CodingKeys: String, CodingKey {
        case id, name, status, shared, subnets, mtu
        case projectID = "project_id"
        case isExternal = "router:external"
        case adminStateUp = "admin_state_up"
    }
}
