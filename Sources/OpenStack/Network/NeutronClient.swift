import Foundation

/// Neutron's networking API (v2.0): networks, a server's ports, security groups with rules.
public struct NeutronClient: Sendable {
    let api: ServiceConnection

    /// Finds Neutron in the catalog, or uses `endpoint` (its root; `/v2.0` is added).
    public init(session: KeystoneSession, interface: String? = nil, region: String? = nil, endpoint: URL? = nil) throws {
        var base = try endpoint ?? session.endpoint(for: "network", interface: interface, region: region)
        if !base.path.hasSuffix("/v2.0") && !base.path.hasSuffix("/v2.0/") { base = base.appendingPathComponent("v2.0") }
        api = ServiceConnection(session: session, service: "Neutron", base: base)
    }

    /// Networks the session sees; `filters` are Neutron's (`name`, `project_id`, `shared`…).
    public func networks(filters: [String: String] = [:]) throws -> [Network] {
        struct Envelope: Decodable { let networks: [Network] }
        return try api.get("/networks", query(filters), as: Envelope.self).networks
    }

    public func network(_ id: String) throws -> Network {
        struct Envelope: Decodable { let network: Network }
        return try api.get("/networks/\(QueryString.segment(id))", as: Envelope.self).network
    }

    /// The ports of a device: a server's interfaces, when `deviceID` is its id.
    public func ports(ofDevice deviceID: String) throws -> [Port] {
        try ports(filters: ["device_id": deviceID])
    }

    public func ports(filters: [String: String] = [:]) throws -> [Port] {
        struct Envelope: Decodable { let ports: [Port] }
        return try api.get("/ports", query(filters), as: Envelope.self).ports
    }

    /// Security groups with their rules, of `projectID` or all the session sees.
    public func securityGroups(projectID: String? = nil, name: String? = nil) throws -> [SecurityGroup] {
        struct Envelope: Decodable { let security_groups: [SecurityGroup] }
        var filters: [String: String] = [:]
        if let projectID { filters["project_id"] = projectID }
        if let name { filters["name"] = name }
        return try api.get("/security-groups", query(filters), as: Envelope.self).security_groups
    }

    public func securityGroup(_ id: String) throws -> SecurityGroup {
        struct Envelope: Decodable { let security_group: SecurityGroup }
        return try api.get("/security-groups/\(QueryString.segment(id))", as: Envelope.self).security_group
    }

    /// Creates a security group in the session's project (Neutron adds its default egress rules).
    public func createSecurityGroup(name: String, description: String?) throws -> SecurityGroup {
        struct Body: Encodable {
            struct Inner: Encodable { let name: String; let description: String? }
            let security_group: Inner
        }
        struct Envelope: Decodable { let security_group: SecurityGroup }
        let request = try api.request(.post, "/security-groups", json: Body(security_group: .init(name: name, description: description)))
        return try api.send(request, as: Envelope.self).security_group
    }

    /// Adds `rule` (its id ignored) to a group; `remoteGroupID` must name a group of the same
    /// project. False when the group already has an equal rule (409).
    @discardableResult
    public func addRule(_ rule: SecurityGroup.Rule, toGroup groupID: String) throws -> Bool {
        struct Inner: Encodable {
            let security_group_id: String, direction: String, ethertype: String
            let `protocol`: String?, port_range_min: Int?, port_range_max: Int?
            let remote_ip_prefix: String?, remote_group_id: String?, description: String?
        }
        struct Body: Encodable { let security_group_rule: Inner }
        let body = Body(security_group_rule: Inner(
            security_group_id: groupID, direction: rule.direction, ethertype: rule.ethertype, protocol: rule.proto,
            port_range_min: rule.portRangeMin, port_range_max: rule.portRangeMax, remote_ip_prefix: rule.remoteIPPrefix,
            remote_group_id: rule.remoteGroupID, description: rule.description))
        do {
            try api.send(try api.request(.post, "/security-group-rules", json: body))
            return true
        } catch let error as HTTPError where error.statusCode == 409 {
            return false
        }
    }

    @discardableResult
    public func deleteSecurityGroup(_ id: String) throws -> Bool {
        try api.delete("/security-groups/\(QueryString.segment(id))")
    }

    private func query(_ filters: [String: String]) -> [(String, String?)] {
        filters.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}
