import Foundation

/// "Stop this job and clean up after it."
public struct CancelRequest: LifeboatMessage, Hashable {
    public static let messageType = "cancel.request"
    public static let supportedVersions = 1...1

    /// The `type` field, written with every message so a reader knows what it holds.
    public let type = CancelRequest.messageType

    public var version: Int
    public var requestId: String
    public var jobId: String
    public var project: String
    public var requestedBy: Principal?

    public init(requestId: String, jobId: String, project: String, requestedBy: Principal? = nil) {
        self.version = Self.supportedVersions.upperBound
        self.requestId = requestId
        self.jobId = jobId
        self.project = project
        self.requestedBy = requestedBy
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case type, version, requestId, jobId, project, requestedBy }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownFields(CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        version = try c.decode(Int.self, forKey: .version)
        requestId = try c.identifier(.requestId)
        jobId = try c.identifier(.jobId)
        project = try c.identifier(.project)
        requestedBy = try c.decodeIfPresent(Principal.self, forKey: .requestedBy)
    }
}
