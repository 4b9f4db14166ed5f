/// A back-end pool as the scheduler sees it (`GET /scheduler-stats/get_pools?detail=true`,
/// admin): its name is a volume's `host`, and `storageProtocol` says how its volumes are
/// reached ("ceph" for RBD, "iSCSI", "NFS"…).
public struct StoragePool: Sendable, Codable, Equatable {
    public var name: String
    public var backendName: String?
    public var storageProtocol: String?
    public var vendorName: String?
    public var driverVersion: String?
    public var totalCapacityGB: Double?
    public var freeCapacityGB: Double?

    public var location: VolumeLocation { VolumeLocation(parsing: name) }

    enum CodingKeys: String, CodingKey { case name, capabilities }

    struct Capabilities: Codable {
        let volume_backend_name: String?
        let storage_protocol: String?
        let vendor_name: String?
        let driver_version: String?
        let total_capacity_gb: FlexibleNumber?
        let free_capacity_gb: FlexibleNumber?
    }

    /// Capacities come as numbers or as "infinite"/"unknown".
    struct FlexibleNumber: Codable {
        let value: Double?
        init(_ value: Double?) { self.value = value }
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            value = try? c.decode(Double.self)
        }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            try c.encode(value)
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        let capabilities = try c.decodeIfPresent(Capabilities.self, forKey: .capabilities)
        backendName = capabilities?.volume_backend_name
        storageProtocol = capabilities?.storage_protocol
        vendorName = capabilities?.vendor_name
        driverVersion = capabilities?.driver_version
        totalCapacityGB = capabilities?.total_capacity_gb?.value
        freeCapacityGB = capabilities?.free_capacity_gb?.value
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(Capabilities(volume_backend_name: backendName, storage_protocol: storageProtocol, vendor_name: vendorName,
                                  driver_version: driverVersion, total_capacity_gb: nil, free_capacity_gb: nil), forKey: .capabilities)
    }
}
