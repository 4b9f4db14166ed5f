/// Why a message could not be read. Every case renders as a sentence an operator understands,
/// because this text travels in the dead-letter headers and in the `rejected` result.
public enum EventDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    case tooLarge(bytes: Int, limit: Int)
    case notJSON(detail: String)
    case notAnObject(found: String)
    case missingType
    case unknownType(String)
    case unsupportedVersion(type: String, version: Int, supported: ClosedRange<Int>)
    case missingField(path: String)
    case wrongType(path: String, expected: String)
    case invalidValue(path: String, reason: String)
    case unknownField(path: String)
    case notANotification(detail: String)

    public var description: String {
        switch self {
        case .tooLarge(let bytes, let limit):
            "message is \(bytes) bytes, over the limit of \(limit) bytes"
        case .notJSON(let detail):
            "message body is not valid JSON (\(detail))"
        case .notAnObject(let found):
            "message body must be a JSON object, found \(found)"
        case .missingType:
            "message has no \"type\" field, so it is not a Lifeboat message"
        case .unknownType(let type):
            "unknown message type \"\(type)\""
        case .unsupportedVersion(let type, let version, let supported):
            supported.lowerBound == supported.upperBound
                ? "\(type) version \(version) is not supported (this worker reads version \(supported.lowerBound))"
                : "\(type) version \(version) is not supported (this worker reads versions \(supported.lowerBound)–\(supported.upperBound))"
        case .missingField(let path):
            "required field \"\(path)\" is missing"
        case .wrongType(let path, let expected):
            "field \"\(path)\" must be \(expected)"
        case .invalidValue(let path, let reason):
            "field \"\(path)\" is invalid: \(reason)"
        case .unknownField(let path):
            "unknown field \"\(path)\" (a typo, or a newer message version than this worker reads?)"
        case .notANotification(let detail):
            "not an OpenStack notification: \(detail)"
        }
    }
}

extension EventDecodingError {
    /// Turns Foundation's `DecodingError` (whose text names Swift types and coding paths) into
    /// one of ours, with the path written the way the JSON reads: `source.disks[0].path`.
    static func from(_ error: any Error) -> EventDecodingError {
        if let own = error as? EventDecodingError { return own }
        guard let error = error as? DecodingError else {
            return .notJSON(detail: String(describing: error))
        }
        switch error {
        case .keyNotFound(let key, let context):
            return .missingField(path: jsonPath(context.codingPath + [key]))
        case .typeMismatch(let type, let context):
            return .wrongType(path: jsonPath(context.codingPath), expected: expectation(for: type))
        case .valueNotFound(let type, let context):
            return .wrongType(path: jsonPath(context.codingPath), expected: expectation(for: type) + ", not null")
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty {
                return .notJSON(detail: shortened(context.underlyingError.map { "\($0)" } ?? context.debugDescription))
            }
            return .invalidValue(path: jsonPath(context.codingPath), reason: context.debugDescription)
        @unknown default:
            return .notJSON(detail: String(describing: error))
        }
    }

    static func jsonPath(_ codingPath: [any CodingKey]) -> String {
        var path = ""
        for key in codingPath {
            if let index = key.intValue {
                path += "[\(index)]"
            } else {
                path += path.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return path.isEmpty ? "(message)" : path
    }

    private static func expectation(for type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "a boolean"
        case is Int.Type, is Int64.Type, is UInt64.Type, is Int32.Type, is UInt32.Type: "an integer"
        case is Double.Type, is Float.Type: "a number"
        default:
            String(describing: type).hasPrefix("Array") ? "an array" : "an object"
        }
    }
}

private func shortened(_ text: String) -> String {
    text.count > 200 ? String(text.prefix(200)) + "…" : text
}
