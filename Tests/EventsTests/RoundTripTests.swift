import Events
import Foundation
import XCTest

/// What Lifeboat writes, it reads back unchanged.
final class RoundTripTests: XCTestCase {
    private func assertRoundTrip<M: LifeboatMessage & Equatable>(_ messages: [M], file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertFalse(messages.isEmpty, file: file, line: line)
        for message in messages {
            let data = MessageCodec.encode(message)
            let decoded = try MessageCodec.decode(M.self, from: data)
            XCTAssertEqual(decoded, message, String(decoding: data, as: UTF8.self), file: file, line: line)
            XCTAssertEqual(MessageCodec.encode(decoded), data, "encoding is not stable", file: file, line: line)
            let header = try MessageCodec.header(of: data)
            XCTAssertEqual(header.type, M.messageType, file: file, line: line)
            XCTAssertEqual(header.version, 1, file: file, line: line)
        }
    }

    func testBackupRequestsWithEverySourceKind() throws {
        XCTAssertEqual(Set(Samples.sources.map(\.kind)), Set(BackupSource.Kind.allCases))
        try assertRoundTrip(Samples.backups)
    }

    func testRestoreRequestsWithEveryTargetKind() throws {
        XCTAssertEqual(Set(Samples.targets.map(\.kind)), Set(RestoreTarget.Kind.allCases))
        try assertRoundTrip(Samples.restores)
    }

    func testCancelRequests() throws {
        try assertRoundTrip(Samples.cancels)
    }

    func testTaskEventsOfEveryKindWithParameters() throws {
        XCTAssertEqual(Set(Samples.tasks.map(\.kind)), Set(TaskKind.allCases))
        try assertRoundTrip(Samples.tasks)
    }

    func testResultsOfEveryStatus() throws {
        XCTAssertEqual(Set(Samples.results.map(\.status)), Set(ResultStatus.allCases))
        try assertRoundTrip(Samples.results)
    }

    func testInboundRequestDispatchesOnType() throws {
        for request in Samples.backups {
            XCTAssertEqual(try InboundRequest.decode(MessageCodec.encode(request)), .backup(request))
        }
        for request in Samples.restores {
            XCTAssertEqual(try InboundRequest.decode(MessageCodec.encode(request)), .restore(request))
        }
        for request in Samples.cancels {
            XCTAssertEqual(try InboundRequest.decode(MessageCodec.encode(request)), .cancel(request))
        }
    }

    /// The wire form other systems see: tagged unions, RFC 3339 times, defaults written out.
    func testWireFormOfTaggedUnionsAndTimes() throws {
        let backup = String(decoding: MessageCodec.encode(Samples.backups[2]), as: UTF8.self)
        XCTAssert(backup.contains(#""source":{"disks":["vda","vdb"],"domain":"instance-0000002a","host":"compute-1.example.org","kind":"libvirt"}"#), backup)
        let restore = String(decoding: MessageCodec.encode(Samples.restores[4]), as: UTF8.self)
        XCTAssert(restore.contains(#""target":{"cluster":"ceph-b","kind":"rbd","overwrite":false,"pool":"vms"}"#), restore)
        let result = String(decoding: MessageCodec.encode(Samples.results[0]), as: UTF8.self)
        XCTAssert(result.contains(#""at":"2026-01-01T00:00:00.250Z""#), result)
        XCTAssertFalse(result.contains("null"), result)
    }

    /// Optional fields sent as null by other publishers read as absent; times with an offset are understood.
    func testNullOptionalsAndOffsetTimesAreRead() throws {
        let request = try MessageCodec.decode(BackupRequest.self, from: body(#"""
            {"type":"backup.request","version":1,"requestId":"r1","project":"p1","instance":"i1","mode":"full",
             "source":null,"policy":null,"priority":null,"labels":null,"requestedBy":null}
            """#))
        XCTAssertEqual(request, BackupRequest(requestId: "r1", project: "p1", instance: "i1", mode: .full))
        let result = try MessageCodec.decode(JobResult.self, from: body(#"""
            {"type":"result","version":1,"resultId":"r1","status":"accepted","at":"2026-01-01T02:00:00.250+02:00"}
            """#))
        XCTAssertEqual(result.at, sampleTime)
    }
}
