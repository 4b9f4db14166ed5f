/// A Nova flavor (`GET /flavors/{id}`): the size of a server to restore into.
public struct Flavor: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    public var vcpus: Int
    /// MiB.
    public var ram: Int
    /// GiB of root disk.
    public var disk: Int
    public var ephemeral: Int?
    /// MiB of swap (Nova sent "" for none before microversion 2.75).
    public var swap: Int
    public var isPublic: Bool?
    public var description: String?
    public var extraSpecs: [String: String]?

    enum CodingKeys: String, CodingKey {
        case id, name, vcpus, ram, disk, swap, description
        case ephemeral = "OS-FLV-EXT-DATA:ephemeral"
        case isPublic = "os-flavor-access:is_public"
        case extraSpecs = "extra_specs"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        name = try c.decode(String.self, forKey: .name)
        vcpus = try c.decode(Int.self, forKey: .vcpus)
        ram = try c.decode(Int.self, forKey: .ram)
        disk = try c.decode(Int.self, forKey: .disk)
        ephemeral = try c.decodeIfPresent(Int.self, forKey: .ephemeral)
        swap = (try? c.decodeIfPresent(Int.self, forKey: .swap)) ?? 0
        isPublic = try c.decodeIfPresent(Bool.self, forKey: .isPublic)
        description = try c.decodeIfPresent(String.self, forKey: .description)
        extraSpecs = try c.decodeIfPresent([String: String].self, forKey: .extraSpecs)
    }
}
