import Foundation

/// Any request the intake accepts, read from one delivery.
public enum InboundRequest: Sendable, Hashable {
    case backup(BackupRequest)
    case restore(RestoreRequest)
    case cancel(CancelRequest)

    public static func decode(_ body: Data) throws(EventDecodingError) -> InboundRequest {
        let header = try MessageCodec.header(of: body)
        switch header.type {
        case BackupRequest.messageType: return .backup(try MessageCodec.decode(BackupRequest.self, from: body))
        case RestoreRequest.messageType: return .restore(try MessageCodec.decode(RestoreRequest.self, from: body))
        case CancelRequest.messageType: return .cancel(try MessageCodec.decode(CancelRequest.self, from: body))
        default: throw .unknownType(header.type)
        }
    }

    public var requestId: String {
        switch self {
        case .backup(let r): r.requestId
        case .restore(let r): r.requestId
        case .cancel(let r): r.requestId
        }
    }

    public var project: String {
        switch self {
        case .backup(let r): r.project
        case .restore(let r): r.project
        case .cancel(let r): r.project
        }
    }
}
