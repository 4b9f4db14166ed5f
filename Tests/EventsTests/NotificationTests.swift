import Events
import Foundation
import XCTest

/// A real notification from `../shared/data/notifications` beside the repository (or
/// `$LIFEBOAT_SHARED_DIR/data/notifications`), with what its `.meta.json` says about it.
private struct Capture: Sendable {
    var name: String
    var body: Data
    var eventType: String
    var messageId: String?
    var publisherId: String?

    static func all() throws -> [Capture] {
        let shared = ProcessInfo.processInfo.environment["LIFEBOAT_SHARED_DIR"].map { URL(fileURLWithPath: $0) }
            ?? repositoryRoot.appendingPathComponent("../shared").standardized
        let directory = shared.appendingPathComponent("data/notifications")
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else {
            throw XCTSkip("no notification captures at \(directory.path)")
        }
        let captures = try names.filter { $0.hasSuffix(".json") && !$0.hasSuffix(".meta.json") }.sorted().map { name in
            let meta = try JSONSerialization.jsonObject(
                with: Data(contentsOf: directory.appendingPathComponent(name.replacingOccurrences(of: ".json", with: ".meta.json"))))
            let envelope = (meta as? [String: Any])?["envelope"] as? [String: Any]
            return Capture(name: name, body: try Data(contentsOf: directory.appendingPathComponent(name)),
                           eventType: try XCTUnwrap(envelope?["event_type"] as? String, "\(name): no envelope.event_type in its meta"),
                           messageId: envelope?["message_id"] as? String, publisherId: envelope?["publisher_id"] as? String)
        }
        XCTAssertFalse(captures.isEmpty, "no captures in \(directory.path)")
        return captures
    }

    static func named(_ suffix: String) throws -> Capture {
        try XCTUnwrap(try all().first { $0.name.hasSuffix(suffix) }, "no capture named *\(suffix)")
    }

    /// The inner message of the v2 envelope, as an object to edit.
    func innerMessage() throws -> [String: Any] {
        let outer = try XCTUnwrap(JSONSerialization.jsonObject(with: body) as? [String: Any])
        let inner = try XCTUnwrap(outer["oslo.message"] as? String)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(inner.utf8)) as? [String: Any])
    }
}

/// Wraps an inner message in the v2 envelope, as oslo.messaging does.
private func envelope(_ message: [String: Any]) throws -> Data {
    let inner = String(decoding: try JSONSerialization.data(withJSONObject: message), as: UTF8.self)
    return try JSONSerialization.data(withJSONObject: ["oslo.version": "2.0", "oslo.message": inner])
}

final class NotificationTests: XCTestCase {
    func testEveryCaptureDecodesAsAV2Notification() throws {
        for capture in try Capture.all() {
            let notification: OsloNotification
            do {
                notification = try OsloNotification.decode(capture.body)
            } catch {
                XCTFail("\(capture.name): \(error)")
                continue
            }
            XCTAssertEqual(notification.format, .v2, capture.name)
            XCTAssertEqual(notification.eventType, capture.eventType, capture.name)
            XCTAssertEqual(notification.messageId, capture.messageId, capture.name)
            XCTAssertEqual(notification.publisherId, capture.publisherId, capture.name)
        }
    }

    func testInstanceNotificationsAndOnlyThoseYieldInstanceEvents() throws {
        var instances = 0, others = 0
        for capture in try Capture.all() {
            let notification = try OsloNotification.decode(capture.body)
            let event: InstanceEvent?
            do {
                event = try InstanceEvent(notification)
            } catch {
                XCTFail("\(capture.name): \(error)")
                continue
            }
            let type = capture.eventType
            if type.hasPrefix("instance.") || type.hasPrefix("compute.instance.") {
                instances += 1
                let event = try XCTUnwrap(event, "\(capture.name) gives no instance event")
                XCTAssertEqual(event.format, type.hasPrefix("instance.") ? .versioned : .legacy, capture.name)
                XCTAssert(type.hasSuffix("." + event.action), "\(capture.name): action \(event.action)")
                XCTAssertFalse(event.instanceId.isEmpty, capture.name)
                XCTAssertFalse(event.projectId.isEmpty, capture.name)
            } else {
                others += 1
                XCTAssertNil(event, "\(capture.name) (\(type)) is not an instance event")
            }
        }
        XCTAssertGreaterThan(instances, 0)
        XCTAssertGreaterThan(others, 0)
        // The kinds that must not count as instance events are all in the captures.
        let types = try Capture.all().map(\.eventType)
        for prefix in ["service.", "flavor.", "keypair.", "image.", "volume.", "snapshot.", "scheduler.", "compute_task."] {
            XCTAssert(types.contains { $0.hasPrefix(prefix) }, "no \(prefix)* capture")
        }
    }

    func testVersionedInstanceCreateEnd() throws {
        let capture = try Capture.named("-nova-versioned_notifications.info-instance.create.end.json")
        XCTAssert(capture.name.hasPrefix("042-"), capture.name)
        let event = try XCTUnwrap(try InstanceEvent(OsloNotification.decode(capture.body)))
        XCTAssertEqual(event.action, "create.end")
        XCTAssertEqual(event.format, .versioned)
        XCTAssertEqual(event.instanceId, "985e08bd-379b-46fa-aa9f-efecd5cf6741")
        XCTAssertEqual(event.projectId, "20ca93c983a14f19b78393cb78f279e2")
        XCTAssertEqual(event.host, "probe-compute")
        XCTAssertEqual(event.metadata, ["lifeboat_policy": "gold"])
        XCTAssertEqual(event.tags, ["lifeboat"])
        XCTAssertEqual(event.payloadType, "InstanceCreatePayload 1.12")
    }

    func testLegacyTwinGivesTheSameInstance() throws {
        let versioned = try XCTUnwrap(try InstanceEvent(OsloNotification.decode(
            Capture.named("-nova-versioned_notifications.info-instance.create.end.json").body)))
        let capture = try Capture.named("-nova-notifications.info-compute.instance.create.end.json")
        XCTAssert(capture.name.hasPrefix("041-"), capture.name)
        let legacy = try XCTUnwrap(try InstanceEvent(OsloNotification.decode(capture.body)))
        XCTAssertEqual(legacy.format, .legacy)
        XCTAssertEqual(legacy.action, "create.end")
        XCTAssertEqual(legacy.instanceId, versioned.instanceId)
        XCTAssertEqual(legacy.projectId, versioned.projectId)
        XCTAssertEqual(legacy.userId, versioned.userId)
        XCTAssertEqual(legacy.host, versioned.host)
        XCTAssertEqual(legacy.metadata, ["lifeboat_policy": "gold"])
        XCTAssertNil(legacy.tags)
        XCTAssertNil(legacy.payloadType)
    }

    /// Nova (Zed) sends metadata and tag changes as `instance.update` with `InstanceUpdatePayload 2.0`.
    func testInstanceUpdatePayloadVersion2() throws {
        let updates = try Capture.all().filter { $0.eventType == "instance.update" }
        XCTAssertFalse(updates.isEmpty)
        for capture in updates {
            let event = try XCTUnwrap(try InstanceEvent(OsloNotification.decode(capture.body)), capture.name)
            XCTAssertEqual(event.action, "update")
            XCTAssert(event.payloadType?.hasPrefix("InstanceUpdatePayload ") == true, capture.name)
            XCTAssertNotNil(event.tags, capture.name)
        }
        // Another major version is read as long as the fields Lifeboat needs are there, and
        // refused, by the missing field's name, when they are not.
        var message = try Capture.named("-instance.create.end.json").innerMessage()
        var payload = try XCTUnwrap(message["payload"] as? [String: Any])
        payload["nova_object.version"] = "2.0"
        message["payload"] = payload
        let newerMajor = try XCTUnwrap(try InstanceEvent(OsloNotification.decode(try envelope(message))))
        XCTAssertEqual(newerMajor.payloadType, "InstanceCreatePayload 2.0")
        var data = try XCTUnwrap(payload["nova_object.data"] as? [String: Any])
        data["uuid"] = nil
        payload["nova_object.data"] = data
        message["payload"] = payload
        let withoutUUID = try envelope(message)
        assertRejects(.missingField(path: "payload.nova_object.data.uuid"), mentioning: ["uuid"]) { () throws(EventDecodingError) in
            _ = try InstanceEvent(OsloNotification.decode(withoutUUID))
        }
    }

    func testBareV1FormDecodes() throws {
        for suffix in ["-instance.create.end.json", "-compute.instance.create.end.json"] {
            let capture = try Capture.named(suffix)
            let bare = try JSONSerialization.data(withJSONObject: capture.innerMessage())
            let v1 = try OsloNotification.decode(bare)
            let v2 = try OsloNotification.decode(capture.body)
            XCTAssertEqual(v1.format, .v1)
            XCTAssertEqual(v1.eventType, v2.eventType)
            XCTAssertEqual(v1.messageId, v2.messageId)
            XCTAssertEqual(v1.payload, v2.payload)
            XCTAssertEqual(try InstanceEvent(v1), try InstanceEvent(v2))
        }
    }

    func testInstanceNotificationWithoutItsIdIsAnError() throws {
        var message = try Capture.named("-instance.create.end.json").innerMessage()
        var payload = try XCTUnwrap(message["payload"] as? [String: Any])
        var data = try XCTUnwrap(payload["nova_object.data"] as? [String: Any])
        data["uuid"] = nil
        payload["nova_object.data"] = data
        message["payload"] = payload
        let versioned = try envelope(message)
        assertRejects(.missingField(path: "payload.nova_object.data.uuid"), mentioning: [#""payload.nova_object.data.uuid" is missing"#]) { () throws(EventDecodingError) in
            _ = try InstanceEvent(OsloNotification.decode(versioned))
        }

        var legacyMessage = try Capture.named("-compute.instance.create.end.json").innerMessage()
        var legacyPayload = try XCTUnwrap(legacyMessage["payload"] as? [String: Any])
        legacyPayload["instance_id"] = nil
        legacyMessage["payload"] = legacyPayload
        let legacy = try envelope(legacyMessage)
        assertRejects(.missingField(path: "payload.instance_id")) { () throws(EventDecodingError) in
            _ = try InstanceEvent(OsloNotification.decode(legacy))
        }
    }

    func testMalformedNotifications() {
        assertRejects(.notAnObject(found: "an array")) { () throws(EventDecodingError) in _ = try OsloNotification.decode(body("[]")) }
        assertRejects(.invalidValue(path: "oslo.version", reason: "envelope version 1.0 is not supported (2.x is)")) { () throws(EventDecodingError) in
            _ = try OsloNotification.decode(body(#"{"oslo.version":"1.0","oslo.message":"{}"}"#))
        }
        assertRejects(.notAnObject(found: "an array in oslo.message")) { () throws(EventDecodingError) in
            _ = try OsloNotification.decode(body(#"{"oslo.version":"2.0","oslo.message":"[1]"}"#))
        }
        assertRejects(.missingField(path: "oslo.message.payload")) { () throws(EventDecodingError) in
            _ = try OsloNotification.decode(body(#"{"oslo.version":"2.0","oslo.message":"{\"event_type\":\"instance.update\"}"}"#))
        }
        assertRejects(.notANotification(detail: "it has neither oslo.message nor event_type and payload"),
                      mentioning: ["not an OpenStack notification"]) { () throws(EventDecodingError) in
            _ = try OsloNotification.decode(body(#"{"type":"backup.request","version":1}"#))
        }
    }

    /// Keystone tokens travel in `_context_auth_token` and in request contexts serialised into
    /// legacy payloads (`..._context.auth_token`); none may survive into an OsloNotification.
    func testRequestContextsAndTokensAreNotRetained() throws {
        let token = "gAAAAABtest-token-9f3c1e"
        var message = try Capture.named("-compute.instance.create.end.json").innerMessage()
        message["_context_auth_token"] = token
        message["_context_service_catalog"] = [["token": token]]
        var payload = try XCTUnwrap(message["payload"] as? [String: Any])
        payload["request_spec"] = ["pci_requests": ["_context": ["auth_token": token, "user_name": "admin"], "requests": []]]
        message["payload"] = payload
        var bodies = [("synthetic v2", try envelope(message)), ("synthetic v1", try JSONSerialization.data(withJSONObject: message))]

        // The captures whose payload carries a serialised context (the token itself was redacted to "REDACTED").
        let withContexts = try Capture.all().filter { String(decoding: $0.body, as: UTF8.self).contains(#"\"_context\": {"#) }
        XCTAssertFalse(withContexts.isEmpty, "no capture with a serialised request context")
        bodies += withContexts.map { ($0.name, $0.body) }
        // And any capture whose own `_context_auth_token` is set (none in the Zed set so far).
        for capture in try Capture.all() where try capture.innerMessage()["_context_auth_token"] is String {
            bodies.append((capture.name, capture.body))
        }

        for (name, data) in bodies {
            let notification = try OsloNotification.decode(data)
            let payloadText = String(decoding: try JSONEncoder().encode(notification.payload), as: UTF8.self)
            let everything = String(reflecting: notification) + payloadText
            XCTAssertFalse(everything.contains(token), name)
            XCTAssertFalse(everything.contains("REDACTED"), name)
            XCTAssertFalse(payloadText.contains("auth_token"), name)
            XCTAssertFalse(payloadText.contains("\"_context"), name)
            XCTAssertFalse(everything.contains("_context_"), name)
        }
        // What is kept of the synthetic one is the rest of its payload.
        let kept = try OsloNotification.decode(bodies[0].1)
        XCTAssertEqual(kept.payload["request_spec"]?["pci_requests"], .object(["requests": .array([])]))
        XCTAssertEqual(kept.payload["instance_id"], .string("985e08bd-379b-46fa-aa9f-efecd5cf6741"))
    }
}
