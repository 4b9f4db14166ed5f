/// A Cinder snapshot (`GET /snapshots/{id}`): a volume's point in time, and the source of a
/// new volume (`VolumeCreateRequest.snapshotID`).
public struct VolumeSnapshot: Sendable, Codable, Equatable {
    public var id: String
    public var name: String?
    public var description: String?
    /// creating, available, error, deleting…
    public var status: String
    public var volumeID: String
    /// GiB.
    public var size: Int
    public var metadata: [String: String]?
    public var createdAt: String?

    enum CodingKeys: String, CodingKey {
        case id, name, description, status, size, metadata
        case volumeID = "volume_id"
        case createdAt = "created_at"
    }
}
