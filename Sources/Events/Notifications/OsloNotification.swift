import Foundation

/// An OpenStack notification as oslo.messaging sends it, reduced to what Lifeboat reads.
///
/// Two wire forms exist: the v2 envelope `{"oslo.version": "2.0", "oslo.message": "<JSON text>"}`
/// that every current service sends, and the bare v1 form (the message object itself). The
/// request context fields (`_context_*`, and request contexts serialised inside the payload) are dropped on purpose: Nova's legacy payloads carry the
/// user's live Keystone token in them, and nothing Lifeboat keeps or logs may hold it.
public struct OsloNotification: Sendable, Hashable {
    public enum EnvelopeFormat: String, Sendable { case v1, v2 }

    public var format: EnvelopeFormat
    public var messageId: String?
    public var publisherId: String?
    /// e.g. `instance.create.end` (versioned) or `compute.instance.create.end` (legacy).
    public var eventType: String
    public var priority: String?
    public var timestamp: String?
    public var payload: JSONValue

    public init(format: EnvelopeFormat, messageId: String?, publisherId: String?, eventType: String,
                priority: String?, timestamp: String?, payload: JSONValue) {
        self.format = format
        self.messageId = messageId
        self.publisherId = publisherId
        self.eventType = eventType
        self.priority = priority
        self.timestamp = timestamp
        self.payload = payload
    }

    public static func decode(_ body: Data) throws(EventDecodingError) -> OsloNotification {
        guard body.count <= MessageLimits.maxNotificationBytes else {
            throw .tooLarge(bytes: body.count, limit: MessageLimits.maxNotificationBytes)
        }
        let outer = try parseObject(body, what: "message body")
        if outer["oslo.message"] != nil || outer["oslo.version"] != nil {
            guard case .string(let version)? = outer["oslo.version"] else {
                throw .wrongType(path: "oslo.version", expected: "a string such as \"2.0\"")
            }
            guard version.hasPrefix("2.") else {
                throw .invalidValue(path: "oslo.version", reason: "envelope version \(version) is not supported (2.x is)")
            }
            guard case .string(let inner)? = outer["oslo.message"] else {
                throw .wrongType(path: "oslo.message", expected: "a string holding the JSON message")
            }
            let message = try parseObject(Data(inner.utf8), what: "oslo.message")
            return try fields(of: message, format: .v2, pathPrefix: "oslo.message.")
        }
        return try fields(of: outer, format: .v1, pathPrefix: "")
    }

    private static func parseObject(_ data: Data, what: String) throws(EventDecodingError) -> [String: JSONValue] {
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw .notJSON(detail: "\(what) does not parse")
        }
        guard case .object(let object) = value else {
            throw .notAnObject(found: value.kindDescription + (what == "message body" ? "" : " in \(what)"))
        }
        return object
    }

    private static func fields(of message: [String: JSONValue], format: EnvelopeFormat, pathPrefix: String) throws(EventDecodingError) -> OsloNotification {
        func optionalString(_ key: String) throws(EventDecodingError) -> String? {
            switch message[key] {
            case nil, .null?: return nil
            case .string(let s)?: return s
            default: throw .wrongType(path: pathPrefix + key, expected: "a string")
            }
        }
        guard let eventType = try optionalString("event_type") else {
            throw message.isEmpty || (message["payload"] == nil && format == .v1)
                ? .notANotification(detail: "it has neither oslo.message nor event_type and payload")
                : .missingField(path: pathPrefix + "event_type")
        }
        try Validate.eventType(eventType, at: pathPrefix + "event_type")
        guard let payload = message["payload"] else { throw .missingField(path: pathPrefix + "payload") }
        return OsloNotification(
            format: format, messageId: try optionalString("message_id"), publisherId: try optionalString("publisher_id"),
            eventType: eventType, priority: try optionalString("priority"), timestamp: try optionalString("timestamp"),
            payload: payload.withoutRequestContexts())
    }

    /// Nova's versioned payloads are `nova_object`s; the legacy ones are plain objects.
    public var novaObject: NovaObject? { NovaObject(payload) }
}

/// A versioned payload: `{"nova_object.name", "nova_object.version", "nova_object.namespace", "nova_object.data"}`.
public struct NovaObject: Sendable, Hashable {
    public var name: String
    public var namespace: String?
    public var version: String
    public var data: [String: JSONValue]

    public init?(_ value: JSONValue) {
        guard case .object(let fields) = value,
              case .string(let name)? = fields["nova_object.name"],
              case .string(let version)? = fields["nova_object.version"],
              case .object(let data)? = fields["nova_object.data"] else { return nil }
        self.name = name
        self.version = version
        self.namespace = fields["nova_object.namespace"]?.stringValue
        self.data = data
    }

}

extension JSONValue {
    /// Nova's legacy payloads can embed a serialised request context (e.g. `request_spec.
    /// instance_properties.pci_requests._context`) holding the user's Keystone token; such
    /// objects and token fields are dropped at any depth, so no notification Lifeboat keeps holds one.
    func withoutRequestContexts() -> JSONValue {
        switch self {
        case .object(let fields):
            var kept: [String: JSONValue] = [:]
            for (key, value) in fields where !key.hasPrefix("_context") && key != "auth_token" && key != "service_token" {
                kept[key] = value.withoutRequestContexts()
            }
            return .object(kept)
        case .array(let items):
            return .array(items.map { $0.withoutRequestContexts() })
        default:
            return self
        }
    }
}

extension Validate {
    static func eventType(_ value: String, at path: String) throws(EventDecodingError) {
        guard !value.isEmpty, value.utf8.count <= 255,
              value.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || $0.properties.numericType != nil || "._-".unicodeScalars.contains($0)) })
        else { throw .invalidValue(path: path, reason: "\"\(value.prefix(80))\" is not an event type") }
    }
}
