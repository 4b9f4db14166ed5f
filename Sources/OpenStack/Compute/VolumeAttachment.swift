/// A volume attached to a server (`GET /servers/{id}/os-volume_attachments`).
public struct VolumeAttachment: Sendable, Codable, Equatable {
    public var id: String?
    public var serverID: String
    public var volumeID: String
    /// The guest device name Nova reports, e.g. `/dev/vdb` (a guess for some guests).
    public var device: String?
    public var tag: String?
    public var deleteOnTermination: Bool?
    /// Cinder's attachment record (microversion 2.89).
    public var attachmentID: String?

    enum CodingKeys: String, CodingKey {
        case id, device, tag
        case serverID = "serverId"
        case volumeID = "volumeId"
        case deleteOnTermination = "delete_on_termination"
        case attachmentID = "attachment_id"
    }
}
