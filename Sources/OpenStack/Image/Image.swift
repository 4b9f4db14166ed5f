import Foundation

/// A Glance image (`GET /v2/images/{id}`): its state, formats, size and the digests Glance
/// recorded at upload, which a download is checked against. Glance puts custom properties at
/// the top level of the image; they are gathered in `properties` (string values only).
public struct Image: Sendable, Codable, Equatable {
    public var id: String
    public var name: String?
    /// queued, saving, active, killed, deleted, pending_delete, importing…
    public var status: String
    public var diskFormat: String?
    public var containerFormat: String?
    public var size: Int64?
    public var virtualSize: Int64?
    /// MD5 of the data (the legacy checksum).
    public var checksum: String?
    /// The multihash: algorithm (sha512 by default) and hex digest.
    public var hashAlgorithm: String?
    public var hashValue: String?
    public var visibility: String?
    public var owner: String?
    public var minDisk: Int?
    public var minRAM: Int?
    public var isProtected: Bool?
    public var tags: [String]
    public var createdAt: String?
    public var updatedAt: String?
    public var properties: [String: String]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case id, name, status, size, checksum, visibility, owner, tags
        case diskFormat = "disk_format"
        case containerFormat = "container_format"
        case virtualSize = "virtual_size"
        case hashAlgorithm = "os_hash_algo"
        case hashValue = "os_hash_value"
        case minDisk = "min_disk"
        case minRAM = "min_ram"
        case isProtected = "protected"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    /// Keys Glance adds that are neither fields above nor properties.
    private static let bookkeeping: Set = ["self", "file", "schema", "locations", "direct_url", "os_hidden", "stores"]

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        name = try c.decodeIfPresent(String.self, forKey: .name)
        status = try c.decode(String.self, forKey: .status)
        diskFormat = try c.decodeIfPresent(String.self, forKey: .diskFormat)
        containerFormat = try c.decodeIfPresent(String.self, forKey: .containerFormat)
        size = try c.decodeIfPresent(Int64.self, forKey: .size)
        virtualSize = try c.decodeIfPresent(Int64.self, forKey: .virtualSize)
        checksum = try c.decodeIfPresent(String.self, forKey: .checksum)
        hashAlgorithm = try c.decodeIfPresent(String.self, forKey: .hashAlgorithm)
        hashValue = try c.decodeIfPresent(String.self, forKey: .hashValue)
        visibility = try c.decodeIfPresent(String.self, forKey: .visibility)
        owner = try c.decodeIfPresent(String.self, forKey: .owner)
        minDisk = try c.decodeIfPresent(Int.self, forKey: .minDisk)
        minRAM = try c.decodeIfPresent(Int.self, forKey: .minRAM)
        isProtected = try c.decodeIfPresent(Bool.self, forKey: .isProtected)
        tags = try c.decodeIfPresent([String].self, forKey: .tags) ?? []
        createdAt = try c.decodeIfPresent(String.self, forKey: .createdAt)
        updatedAt = try c.decodeIfPresent(String.self, forKey: .updatedAt)
        let known = Set(CodingKeys.allCases.map(\.stringValue)).union(Self.bookkeeping)
        let all = try decoder.container(keyedBy: AnyKey.self)
        var properties: [String: String] = [:]
        for key in all.allKeys where !known.contains(key.stringValue) {
            if let text = try? all.decode(String.self, forKey: key) { properties[key.stringValue] = text }
        }
        self.properties = properties
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encodeIfPresent(name, forKey: .name)
        try c.encode(status, forKey: .status)
        try c.encodeIfPresent(diskFormat, forKey: .diskFormat)
        try c.encodeIfPresent(containerFormat, forKey: .containerFormat)
        try c.encodeIfPresent(size, forKey: .size)
        try c.encodeIfPresent(virtualSize, forKey: .virtualSize)
        try c.encodeIfPresent(checksum, forKey: .checksum)
        try c.encodeIfPresent(hashAlgorithm, forKey: .hashAlgorithm)
        try c.encodeIfPresent(hashValue, forKey: .hashValue)
        try c.encodeIfPresent(visibility, forKey: .visibility)
        try c.encodeIfPresent(owner, forKey: .owner)
        try c.encodeIfPresent(minDisk, forKey: .minDisk)
        try c.encodeIfPresent(minRAM, forKey: .minRAM)
        try c.encodeIfPresent(isProtected, forKey: .isProtected)
        try c.encode(tags, forKey: .tags)
        try c.encodeIfPresent(createdAt, forKey: .createdAt)
        try c.encodeIfPresent(updatedAt, forKey: .updatedAt)
        var all = encoder.container(keyedBy: AnyKey.self)
        for (key, value) in properties { try all.encode(value, forKey: AnyKey(stringValue: key)) }
    }
}

/// What `POST /v2/images` is given: an empty image record, to which data is then uploaded.
public struct ImageCreateRequest: Sendable, Encodable, Equatable {
    public var name: String
    public var diskFormat: String
    public var containerFormat: String
    public var visibility: String?
    public var minDisk: Int?
    public var minRAM: Int?
    public var tags: [String]?
    /// Custom properties (e.g. `hw_disk_bus`), sent at the top level as Glance wants them.
    public var properties: [String: String]

    public init(name: String, diskFormat: String = "raw", containerFormat: String = "bare", visibility: String? = "private",
                minDisk: Int? = nil, minRAM: Int? = nil, tags: [String]? = nil, properties: [String: String] = [:]) {
        self.name = name
        self.diskFormat = diskFormat
        self.containerFormat = containerFormat
        self.visibility = visibility
        self.minDisk = minDisk
        self.minRAM = minRAM
        self.tags = tags
        self.properties = properties
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: AnyKey.self)
        for (key, value) in properties { try c.encode(value, forKey: AnyKey(stringValue: key)) }
        try c.encode(name, forKey: AnyKey(stringValue: "name"))
        try c.encode(diskFormat, forKey: AnyKey(stringValue: "disk_format"))
        try c.encode(containerFormat, forKey: AnyKey(stringValue: "container_format"))
        try c.encodeIfPresent(visibility, forKey: AnyKey(stringValue: "visibility"))
        try c.encodeIfPresent(minDisk, forKey: AnyKey(stringValue: "min_disk"))
        try c.encodeIfPresent(minRAM, forKey: AnyKey(stringValue: "min_ram"))
        try c.encodeIfPresent(tags, forKey: AnyKey(stringValue: "tags"))
    }
}
