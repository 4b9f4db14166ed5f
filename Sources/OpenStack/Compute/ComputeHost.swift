/// A hypervisor as Nova lists it (`GET /os-hypervisors/detail`, admin): the compute service's
/// host (what a server's `OS-EXT-SRV-ATTR:host` names) and its state. Lifeboat reaches each one
/// over SSH with credentials the operator gives (`LIFEBOAT_HYPERVISORS`), which Nova does not know.
public struct ComputeHost: Sendable, Codable, Equatable {
    /// A number before microversion 2.53, a UUID since: kept as text.
    public var id: String
    public var hypervisorHostname: String
    /// up or down.
    public var state: String?
    /// enabled or disabled.
    public var status: String?
    public var hostIP: String?
    public var hypervisorType: String?
    /// The nova-compute service's host.
    public var serviceHost: String?

    enum CodingKeys: String, CodingKey {
        case id, state, status, service
        case hypervisorHostname = "hypervisor_hostname"
        case hostIP = "host_ip"
        case hypervisorType = "hypervisor_type"
    }

    struct Service: Codable { let host: String? }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let number = try? c.decode(Int.self, forKey: .id) { id = String(number) } else { id = try c.decode(String.self, forKey: .id) }
        hypervisorHostname = try c.decode(String.self, forKey: .hypervisorHostname)
        state = try c.decodeIfPresent(String.self, forKey: .state)
        status = try c.decodeIfPresent(String.self, forKey: .status)
        hostIP = try c.decodeIfPresent(String.self, forKey: .hostIP)
        hypervisorType = try c.decodeIfPresent(String.self, forKey: .hypervisorType)
        serviceHost = try c.decodeIfPresent(Service.self, forKey: .service)?.host
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(hypervisorHostname, forKey: .hypervisorHostname)
        try c.encodeIfPresent(state, forKey: .state)
        try c.encodeIfPresent(status, forKey: .status)
        try c.encodeIfPresent(hostIP, forKey: .hostIP)
        try c.encodeIfPresent(hypervisorType, forKey: .hypervisorType)
        try c.encodeIfPresent(serviceHost.map { Service(host: $0) }, forKey: .service)
    }
}
