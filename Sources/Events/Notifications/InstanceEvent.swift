import Foundation

/// What Lifeboat needs from a Nova instance notification, the same whether it came versioned
/// (`instance.create.end`, `InstanceCreatePayload`) or legacy (`compute.instance.create.end`).
///
/// Protection policies hang off it: the metadata key or tag that asks for backups, the
/// project, the hypervisor host the libvirt strategy will SSH into.
public struct InstanceEvent: Sendable, Hashable {
    public enum Format: String, Sendable { case versioned, legacy }

    /// The action without its prefix: `create.end`, `delete.start`, `update`, `volume_attach.end`, ...
    public var action: String
    public var format: Format
    public var instanceId: String
    public var projectId: String
    public var userId: String?
    public var host: String?
    public var displayName: String?
    public var state: String?
    public var metadata: [String: String]
    /// Versioned payloads carry tags (InstanceCreatePayload, InstanceUpdatePayload); legacy ones do not.
    public var tags: [String]?
    /// The payload's class and version, e.g. `InstanceCreatePayload 1.12`; nil for legacy.
    public var payloadType: String?

    /// Reads an instance event from a notification; nil when the notification is about
    /// something else (services, flavors, images, volumes). A notification that claims to be
    /// about an instance but lacks what every instance payload has is an error.
    public init?(_ notification: OsloNotification) throws(EventDecodingError) {
        let type = notification.eventType
        let data: [String: JSONValue]
        let base: String
        if type.hasPrefix("instance.") {
            guard let object = notification.novaObject else {
                throw .invalidValue(path: "payload", reason: "a versioned \(type) notification must carry a nova_object payload")
            }
            guard object.name.hasPrefix("Instance") else { return nil }
            let supported = Self.supportedMajorVersions[object.name] ?? 1...1
            guard let major = object.majorVersion, supported.contains(major) else {
                let versions = supported.map { "\($0).x" }.joined(separator: " or ")
                throw .invalidValue(path: "payload.nova_object.version",
                                    reason: "\(object.name) \(object.version) is not supported (\(versions) is)")
            }
            format = .versioned
            action = String(type.dropFirst("instance.".count))
            data = object.data
            payloadType = "\(object.name) \(object.version)"
            base = "payload.nova_object.data."
        } else if type.hasPrefix("compute.instance.") {
            guard case .object(let object) = notification.payload else {
                throw .wrongType(path: "payload", expected: "an object")
            }
            format = .legacy
            action = String(type.dropFirst("compute.instance.".count))
            data = object
            payloadType = nil
            base = "payload."
        } else {
            return nil
        }
        guard !action.isEmpty else { throw .invalidValue(path: "event_type", reason: "names no action") }

        func string(_ key: String, required: Bool) throws(EventDecodingError) -> String? {
            switch data[key] {
            case .string(let s)? where !s.isEmpty: return s
            case nil, .null?, .string?:
                if required { throw .missingField(path: base + key) }
                return nil
            default: throw .wrongType(path: base + key, expected: "a string")
            }
        }
        instanceId = try string(format == .versioned ? "uuid" : "instance_id", required: true)!
        projectId = try string("tenant_id", required: true)!
        try Validate.identifier(instanceId, at: base + (format == .versioned ? "uuid" : "instance_id"))
        try Validate.identifier(projectId, at: base + "tenant_id")
        userId = try string("user_id", required: false)
        host = try string("host", required: false)
        displayName = try string("display_name", required: false)
        state = try string("state", required: false)
        metadata = try Self.metadata(data["metadata"], at: base + "metadata")
        tags = try Self.tags(data["tags"], at: base + "tags")
    }

    /// Payload major versions known to carry the fields read here. Nova (Zed) sends
    /// `InstanceUpdatePayload 2.0`, whose uuid, tenant, host, metadata and tags are as in 1.x.
    static let supportedMajorVersions: [String: ClosedRange<Int>] = ["InstanceUpdatePayload": 1...2]

    /// Metadata is an object of strings in both forms today; very old legacy payloads sent a list
    /// of `{"key", "value"}` pairs, which is read too.
    private static func metadata(_ value: JSONValue?, at path: String) throws(EventDecodingError) -> [String: String] {
        switch value {
        case nil, .null?:
            return [:]
        case .object(let fields)?:
            var result: [String: String] = [:]
            for (key, value) in fields {
                guard case .string(let s) = value else { throw .wrongType(path: path + "." + key, expected: "a string") }
                result[key] = s
            }
            return result
        case .array(let pairs)?:
            var result: [String: String] = [:]
            for (i, pair) in pairs.enumerated() {
                guard case .string(let key)? = pair["key"], case .string(let value)? = pair["value"] else {
                    throw .wrongType(path: path + "[\(i)]", expected: "an object with string \"key\" and \"value\"")
                }
                result[key] = value
            }
            return result
        default:
            throw .wrongType(path: path, expected: "an object")
        }
    }

    private static func tags(_ value: JSONValue?, at path: String) throws(EventDecodingError) -> [String]? {
        switch value {
        case nil, .null?:
            return nil
        case .array(let items)?:
            var result: [String] = []
            for (i, item) in items.enumerated() {
                guard case .string(let tag) = item else { throw .wrongType(path: path + "[\(i)]", expected: "a string") }
                result.append(tag)
            }
            return result
        default:
            throw .wrongType(path: path, expected: "an array of strings")
        }
    }
}
