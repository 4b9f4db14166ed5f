import Foundation

/// The services a token may use and where they answer, as Keystone listed them with the token.
public struct ServiceCatalog: Sendable, Codable, Equatable {
    public struct Service: Sendable, Codable, Equatable {
        public var type: String
        public var name: String?
        public var endpoints: [Endpoint]
    }

    public struct Endpoint: Sendable, Codable, Equatable {
        public var interface: String
        public var region: String?
        public var regionID: String?
        public var url: String

        enum CodingKeys: String, CodingKey {
            case interface, region, url
            case regionID = "region_id"
        }
    }

    public var services: [Service]

    public init(services: [Service]) { self.services = services }

    public init(from decoder: any Decoder) throws {
        services = try decoder.singleValueContainer().decode([Service].self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(services)
    }

    /// The URL of `serviceType` on `interface` in `region` (any region when nil; the first one
    /// listed then, as openstacksdk does).
    public func endpoint(for serviceType: String, interface: String = "public", region: String? = nil) throws -> URL {
        let interface = CloudConfiguration.normalisedInterface(interface)
        let candidates = services.filter { $0.type == serviceType }.flatMap(\.endpoints).filter {
            $0.interface == interface && (region == nil || $0.region == region || $0.regionID == region)
        }
        guard let endpoint = candidates.first, let url = URL(string: endpoint.url) else {
            throw OpenStackError.endpointNotFound(serviceType: serviceType, interface: interface, region: region)
        }
        return url
    }

    /// Every service type listed.
    public var serviceTypes: [String] { services.map(\.type) }
}
