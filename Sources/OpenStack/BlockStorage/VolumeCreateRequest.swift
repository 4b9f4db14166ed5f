/// What `POST /volumes` is given: an empty volume, or one made from a snapshot, another volume
/// or an image.
public struct VolumeCreateRequest: Sendable, Encodable, Equatable {
    /// GiB.
    public var size: Int
    public var name: String?
    public var description: String?
    public var volumeType: String?
    public var availabilityZone: String?
    public var snapshotID: String?
    public var sourceVolumeID: String?
    public var imageID: String?
    public var metadata: [String: String]?

    public init(size: Int, name: String? = nil, description: String? = nil, volumeType: String? = nil,
                availabilityZone: String? = nil, snapshotID: String? = nil, sourceVolumeID: String? = nil,
                imageID: String? = nil, metadata: [String: String]? = nil) {
        self.size = size
        self.name = name
        self.description = description
        self.volumeType = volumeType
        self.availabilityZone = availabilityZone
        self.snapshotID = snapshotID
        self.sourceVolumeID = sourceVolumeID
        self.imageID = imageID
        self.metadata = metadata
    }

    enum CodingKeys: String, CodingKey {
        case size, name, description, metadata
        case volumeType = "volume_type"
        case availabilityZone = "availability_zone"
        case snapshotID = "snapshot_id"
        case sourceVolumeID = "source_volid"
        case imageID = "imageRef"
    }
}
