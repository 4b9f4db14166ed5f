import Events
import Foundation
import XCTest

/// Every way a message can be wrong gives its own error, in words an operator reading a
/// dead-letter header understands.
final class StrictDecodingTests: XCTestCase {
    /// A valid backup request, with `fields` spliced in before the last member.
    private func backup(_ fields: String = "", source: String = #"{"kind":"files","disks":[{"name":"vda","path":"/d/vda","format":"raw"}]}"#) -> Data {
        body(#"{"type":"backup.request","version":1,"requestId":"r1","project":"p1","instance":"i1","source":\#(source)\#(fields),"mode":"full"}"#)
    }

    private func decodeBackup(_ data: Data) throws(EventDecodingError) {
        _ = try MessageCodec.decode(BackupRequest.self, from: data)
    }

    func testTheValidBaseDecodes() throws {
        XCTAssertEqual(try MessageCodec.decode(BackupRequest.self, from: backup()).source?.kind, .files)
    }

    func testUnknownSchemaVersion() {
        let data = body(#"{"type":"backup.request","version":2,"requestId":"r1","project":"p1","instance":"i1","mode":"full","newField":1}"#)
        assertRejects(.unsupportedVersion(type: "backup.request", version: 2, supported: 1...1),
                      mentioning: ["backup.request version 2 is not supported", "reads version 1"]) { () throws(EventDecodingError) in
            _ = try InboundRequest.decode(data)
        }
    }

    func testMissingField() {
        let data = body(#"{"type":"backup.request","version":1,"requestId":"r1","project":"p1","mode":"full"}"#)
        assertRejects(.missingField(path: "instance"), mentioning: [#"required field "instance" is missing"#]) { () throws(EventDecodingError) in
            try decodeBackup(data)
        }
        assertRejects(.missingField(path: "source.disks[0].path"), mentioning: ["source.disks[0].path", "missing"]) { () throws(EventDecodingError) in
            try decodeBackup(backup(source: #"{"kind":"files","disks":[{"name":"vda","format":"raw"}]}"#))
        }
        assertRejects(.missingField(path: "version"), mentioning: ["version"]) { () throws(EventDecodingError) in
            try decodeBackup(body(#"{"type":"backup.request"}"#))
        }
    }

    func testWrongType() {
        assertRejects(.wrongType(path: "priority", expected: "an integer"), mentioning: [#""priority" must be an integer"#]) { () throws(EventDecodingError) in
            try decodeBackup(backup(#","priority":"high""#))
        }
        assertRejects(.wrongType(path: "source.disks[0].path", expected: "a string"), mentioning: ["source.disks[0].path", "a string"]) { () throws(EventDecodingError) in
            try decodeBackup(backup(source: #"{"kind":"files","disks":[{"name":"vda","path":5,"format":"raw"}]}"#))
        }
        assertRejects(.wrongType(path: "source.disks", expected: "an array, not null"), mentioning: ["source.disks", "not null"]) { () throws(EventDecodingError) in
            try decodeBackup(backup(source: #"{"kind":"rbd","cluster":"c1","disks":null}"#))
        }
        assertRejects(.wrongType(path: "version", expected: "an integer")) { () throws(EventDecodingError) in
            try decodeBackup(body(#"{"type":"backup.request","version":"1"}"#))
        }
    }

    func testOversizeMessage() {
        let label = String(repeating: "x", count: MessageLimits.maxMessageBytes)
        let data = backup(#","labels":{"big":"\#(label)"}"#)
        assertRejects(.tooLarge(bytes: data.count, limit: 1 << 20), mentioning: ["\(data.count) bytes", "over the limit of 1048576 bytes"]) { () throws(EventDecodingError) in
            _ = try InboundRequest.decode(data)
        }
        let notification = Data(count: MessageLimits.maxNotificationBytes + 1)
        assertRejects(.tooLarge(bytes: notification.count, limit: MessageLimits.maxNotificationBytes)) { () throws(EventDecodingError) in
            _ = try OsloNotification.decode(notification)
        }
    }

    func testUnknownField() {
        assertRejects(.unknownField(path: "modee"), mentioning: [#"unknown field "modee""#, "typo"]) { () throws(EventDecodingError) in
            try decodeBackup(backup(#","modee":"incremental""#))
        }
        assertRejects(.unknownField(path: "source.disks[0].size"), mentioning: ["source.disks[0].size"]) { () throws(EventDecodingError) in
            try decodeBackup(backup(source: #"{"kind":"files","disks":[{"name":"vda","path":"/d","format":"raw","size":1}]}"#))
        }
        // A field of another kind of source is unknown in this one.
        assertRejects(.unknownField(path: "source.cluster"), mentioning: ["source.cluster"]) { () throws(EventDecodingError) in
            try decodeBackup(backup(source: #"{"kind":"files","cluster":"c1","disks":[{"name":"vda","path":"/d","format":"raw"}]}"#))
        }
    }

    func testBadEnumValue() {
        assertRejects(.invalidValue(path: "mode", reason: #""differential" is not one of "full", "incremental""#),
                      mentioning: [#"field "mode" is invalid"#, "differential", #""full", "incremental""#]) { () throws(EventDecodingError) in
            try decodeBackup(body(#"{"type":"backup.request","version":1,"requestId":"r1","project":"p1","instance":"i1","mode":"differential"}"#))
        }
        assertRejects(.invalidValue(path: "source.kind", reason: #""nfs" is not one of "files", "libvirt", "rbd", "cinder""#),
                      mentioning: ["source.kind", "nfs"]) { () throws(EventDecodingError) in
            try decodeBackup(backup(source: #"{"kind":"nfs"}"#))
        }
        assertRejects(.invalidValue(path: "status", reason: #""done" is not one of "accepted", "started", "progress", "succeeded", "failed", "rejected", "cancelled""#)) { () throws(EventDecodingError) in
            _ = try MessageCodec.decode(JobResult.self, from: body(#"{"type":"result","version":1,"resultId":"r","status":"done","at":"2026-01-01T00:00:00Z"}"#))
        }
    }

    func testBadIdentifier() {
        assertRejects(.invalidValue(path: "project", reason: #"only letters, digits, "-", "_" are allowed"#),
                      mentioning: [#""project" is invalid"#, "only letters, digits"]) { () throws(EventDecodingError) in
            try decodeBackup(body(#"{"type":"backup.request","version":1,"requestId":"r1","project":"p.1","instance":"i1","mode":"full"}"#))
        }
        let long = String(repeating: "a", count: 129)
        assertRejects(.invalidValue(path: "requestId", reason: "longer than 128 characters"), mentioning: ["requestId", "128"]) { () throws(EventDecodingError) in
            try decodeBackup(body(#"{"type":"backup.request","version":1,"requestId":"\#(long)","project":"p1","instance":"i1","mode":"full"}"#))
        }
        assertRejects(.invalidValue(path: "source.disks[1]", reason: #"only letters, digits, "-", "_" are allowed"#),
                      mentioning: ["source.disks[1]"]) { () throws(EventDecodingError) in
            try decodeBackup(backup(source: #"{"kind":"libvirt","host":"h","domain":"d","disks":["vda","vd b"]}"#))
        }
        // Task ids also allow "." and ":", but not "/".
        assertRejects(.invalidValue(path: "taskId", reason: #"only letters, digits, "-", "_", ".", ":" are allowed"#)) { () throws(EventDecodingError) in
            _ = try MessageCodec.decode(TaskEvent.self, from: body(#"""
                {"type":"task","version":1,"taskId":"j1/x","kind":"cleanup","createdAt":"2026-01-01T00:00:00Z",
                 "job":{"jobId":"j1","requestId":"r1","operation":"backup","project":"p1"}}
                """#))
        }
    }

    func testNotJSON() {
        do {
            _ = try InboundRequest.decode(body(#"{"type": "backup.request", "version": 1"#))
            XCTFail("decoded")
        } catch {
            guard case .notJSON = error else { return XCTFail("\(error)") }
            XCTAssert(error.description.hasPrefix("message body is not valid JSON"), error.description)
        }
    }

    /// Foundation reports these as "not valid JSON"; the body is JSON, so the text must not say otherwise.
    func testNumberOutOfRangeIsNotCalledInvalidJSON() {
        for priority in ["-1.5", "1e30", "99999999999999999999"] {
            do {
                try decodeBackup(backup(#","priority":\#(priority)"#))
                XCTFail("decoded priority \(priority)")
            } catch {
                guard case .invalidValue = error else { return XCTFail("\(priority): \(error)") }
                XCTAssertFalse(error.description.contains("not valid JSON"), error.description)
                XCTAssert(error.description.contains("number does not fit"), error.description)
            }
        }
    }

    func testNotAnObject() {
        assertRejects(.notAnObject(found: "an array"), mentioning: ["must be a JSON object, found an array"]) { () throws(EventDecodingError) in
            _ = try InboundRequest.decode(body(#"[{"type":"backup.request"}]"#))
        }
        assertRejects(.notAnObject(found: "a string")) { () throws(EventDecodingError) in
            _ = try InboundRequest.decode(body(#""backup.request""#))
        }
    }

    func testMissingOrUnknownType() {
        assertRejects(.missingType, mentioning: [#"no "type" field"#, "not a Lifeboat message"]) { () throws(EventDecodingError) in
            _ = try InboundRequest.decode(body(#"{"version":1,"requestId":"r1"}"#))
        }
        assertRejects(.unknownType("backup.requets"), mentioning: [#"unknown message type "backup.requets""#]) { () throws(EventDecodingError) in
            _ = try InboundRequest.decode(body(#"{"type":"backup.requets","version":1}"#))
        }
        // A result is not something the intake accepts, nor a task something a monitor reads.
        assertRejects(.unknownType("result")) { () throws(EventDecodingError) in
            _ = try MessageCodec.decode(TaskEvent.self, from: MessageCodec.encode(Samples.results[0]))
        }
    }

    func testValueRules() {
        assertRejects(.invalidValue(path: "priority", reason: "must be between 0 and 9"), mentioning: ["priority", "between 0 and 9"]) { () throws(EventDecodingError) in
            try decodeBackup(backup(#","priority":10"#))
        }
        assertRejects(.invalidValue(path: "source.disks[0].path", reason: "must be an absolute path")) { () throws(EventDecodingError) in
            try decodeBackup(backup(source: #"{"kind":"files","disks":[{"name":"vda","path":"disk.img","format":"raw"}]}"#))
        }
        assertRejects(.invalidValue(path: "source.disks", reason: "names a disk twice")) { () throws(EventDecodingError) in
            try decodeBackup(backup(source: #"{"kind":"rbd","cluster":"c","disks":[{"name":"vda","pool":"p","image":"a"},{"name":"vda","pool":"p","image":"b"}]}"#))
        }
        assertRejects(.invalidValue(path: "target.directory", reason: #"must not contain "..""#)) { () throws(EventDecodingError) in
            _ = try InboundRequest.decode(body(#"""
                {"type":"restore.request","version":1,"requestId":"r1","project":"p1","backupId":"b1",
                 "target":{"kind":"files","directory":"/srv/../etc","format":"raw"},"requestedBy":{"userId":"u1"}}
                """#))
        }
        assertRejects(.missingField(path: "requestedBy"), mentioning: ["requestedBy"]) { () throws(EventDecodingError) in
            _ = try InboundRequest.decode(body(#"""
                {"type":"restore.request","version":1,"requestId":"r1","project":"p1","backupId":"b1",
                 "target":{"kind":"files","directory":"/srv","format":"raw"}}
                """#))
        }
        assertRejects(.missingField(path: "reason"), mentioning: [#""reason" is missing"#]) { () throws(EventDecodingError) in
            _ = try MessageCodec.decode(JobResult.self, from: body(#"{"type":"result","version":1,"resultId":"r","status":"failed","at":"2026-01-01T00:00:00Z"}"#))
        }
        assertRejects(.invalidValue(path: "range.length", reason: "must be positive")) { () throws(EventDecodingError) in
            _ = try MessageCodec.decode(TaskEvent.self, from: body(#"""
                {"type":"task","version":1,"taskId":"t1","kind":"transfer","createdAt":"2026-01-01T00:00:00Z",
                 "range":{"offset":0,"length":0},"job":{"jobId":"j1","requestId":"r1","operation":"backup","project":"p1"}}
                """#))
        }
    }

    /// Times are RFC 3339 and nothing else: Foundation's parser alone also took the ones below.
    func testTimesMustBeRFC3339() {
        for time in ["yesterday", "2026-01-01T00:00:00Z junk", "2026-1-1T0:0:0Z", "2026-01-01T00:00:00GMT",
                     "2026-01-01 00:00:00Z", "2026-01-01T00:00:00", "2026-01-01T00:00:00.Z"] {
            assertRejects(.invalidValue(path: "at", reason: "\"\(time)\" is not an RFC 3339 time"), mentioning: [#"field "at""#, "RFC 3339"]) { () throws(EventDecodingError) in
                _ = try MessageCodec.decode(JobResult.self, from: body(#"{"type":"result","version":1,"resultId":"r","status":"started","at":"\#(time)"}"#))
            }
        }
        for time in ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.250Z", "2026-01-01T01:00:00+01:00", "2025-12-31T23:00:00.5-01:00"] {
            XCTAssertNotNil(Timestamp.parse(time), time)
        }
    }
}
