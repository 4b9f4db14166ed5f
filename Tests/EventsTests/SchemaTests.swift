import Events
import Foundation
import XCTest

/// The JSON Schemas in `schemas/` say what the Swift types say: what Lifeboat writes validates,
/// and a document one refuses the other refuses too. Validated by Python's jsonschema.
final class SchemaTests: XCTestCase {
    private static let python = "/usr/bin/python3"

    /// Reads `{"schema": path, "documents": [...]}` and prints, per document, its validation errors.
    private static let validatorScript = """
        import json, sys
        from jsonschema import Draft202012Validator, FormatChecker
        job = json.load(open(sys.argv[1]))
        schema = json.load(open(job["schema"]))
        Draft202012Validator.check_schema(schema)
        validator = Draft202012Validator(schema, format_checker=FormatChecker())
        json.dump([["/".join(map(str, e.absolute_path)) + ": " + e.message for e in validator.iter_errors(d)]
                   for d in job["documents"]], sys.stdout)
        """

    private func schemaURL(_ kind: MessageKind) -> URL {
        repositoryRoot.appendingPathComponent("schemas").appendingPathComponent(kind.schemaFile)
    }

    private struct Missing: Error, CustomStringConvertible { var description: String }

    private struct Run {
        var status: Int32
        var stdout: Data
        var stderr: String
    }

    /// Runs /usr/bin/python3 with output in temporary files (no pipe to fill up), waiting for it to exit.
    private func runPython(_ arguments: [String]) throws -> Run {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-schema-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let out = directory.appendingPathComponent("stdout"), err = directory.appendingPathComponent("stderr")
        try Data().write(to: out)
        try Data().write(to: err)
        let outHandle = try FileHandle(forWritingTo: out), errHandle = try FileHandle(forWritingTo: err)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.python)
        process.arguments = arguments
        process.standardOutput = outHandle
        process.standardError = errHandle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try outHandle.close()
        try errHandle.close()
        return Run(status: process.terminationStatus, stdout: try Data(contentsOf: out),
                   stderr: String(decoding: try Data(contentsOf: err), as: UTF8.self))
    }

    /// Skips (or, in CI with LIFEBOAT_STRICT_TESTS set, fails) when the validator is not installed.
    private func requireJSONSchema() throws {
        let available = FileManager.default.isExecutableFile(atPath: Self.python)
            ? try runPython(["-c", "import jsonschema; jsonschema.Draft202012Validator"]) : nil
        guard let available, available.status == 0 else {
            let message = "\(Self.python) with jsonschema >= 4 (Debian: apt install python3-jsonschema) is needed to check the schemas"
                + (available.map { ": \($0.stderr)" } ?? "")
            if ProcessInfo.processInfo.environment["LIFEBOAT_STRICT_TESTS"] != nil { throw Missing(description: message) }
            throw XCTSkip(message)
        }
    }

    /// The validation errors of each document against the kind's schema ([] when valid).
    private func validate(_ documents: [Data], against kind: MessageKind) throws -> [[String]] {
        try requireJSONSchema()
        let schemaPath = String(decoding: try JSONEncoder().encode(schemaURL(kind).path), as: UTF8.self)
        var job = Data(#"{"schema": \#(schemaPath), "documents": ["#.utf8)
        for (i, document) in documents.enumerated() {
            if i > 0 { job.append(Data(",\n".utf8)) }
            job.append(document)
        }
        job.append(Data("]}".utf8))
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-schema-job-\(UUID().uuidString).json")
        try job.write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let run = try runPython(["-c", Self.validatorScript, file.path])
        guard run.status == 0 else {
            XCTFail("validator exited with \(run.status): \(run.stderr)")
            return []
        }
        let errors = try JSONDecoder().decode([[String]].self, from: run.stdout)
        XCTAssertEqual(errors.count, documents.count)
        return errors
    }

    func testSchemasAreWellFormedAndNamed() throws {
        for kind in MessageKind.allCases {
            let schema = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: schemaURL(kind))) as? [String: Any])
            XCTAssertEqual(schema["$schema"] as? String, "https://json-schema.org/draft/2020-12/schema")
            XCTAssert((schema["$id"] as? String)?.hasSuffix("/" + kind.schemaFile) == true, kind.schemaFile)
            XCTAssertNotNil(schema["title"] as? String)
            XCTAssertNotNil(schema["description"] as? String)
            XCTAssertEqual(schema["additionalProperties"] as? Bool, false)
        }
        let readme = try String(contentsOf: repositoryRoot.appendingPathComponent("schemas/README.md"), encoding: .utf8)
        for kind in MessageKind.allCases { XCTAssert(readme.contains(kind.schemaFile), kind.schemaFile) }
        // check_schema runs in every validation: an empty batch checks each schema against the metaschema.
        for kind in MessageKind.allCases { XCTAssertEqual(try validate([], against: kind), []) }
    }

    func testWhatLifeboatWritesValidates() throws {
        let encoded = Samples.encoded()
        for kind in MessageKind.allCases {
            let documents = encoded.filter { $0.kind == kind }.map(\.data)
            XCTAssertFalse(documents.isEmpty)
            for (document, errors) in zip(documents, try validate(documents, against: kind)) {
                XCTAssertEqual(errors, [], String(decoding: document, as: UTF8.self))
            }
        }
    }

    /// Documents other publishers may send that are valid to both: nulls, offsets, limits.
    func testEdgeDocumentsAcceptedByBoth() throws {
        let id128 = String(repeating: "a", count: 128)
        let task255 = String(repeating: "t.", count: 127) + "t"
        let table: [(MessageKind, String)] = [
            (.backup, #"{"type":"backup.request","version":1,"requestId":"\#(id128)","project":"p1","instance":"i1","mode":"full","source":null,"policy":null,"priority":0,"labels":{},"requestedBy":null}"#),
            (.backup, #"{"type":"backup.request","version":1,"requestId":"r1","project":"p1","instance":"i1","mode":"full","source":{"kind":"libvirt","host":"h","domain":"d","disks":null},"requestedBy":{"userId":"u","userDomain":null}}"#),
            (.restore, #"{"type":"restore.request","version":1,"requestId":"r1","project":"p1","backupId":"b1","target":{"kind":"libvirt","host":"h","start":null,"name":null,"storageDirectory":null},"disks":null,"requestedBy":{"userId":"ü-ser"}}"#),
            (.restore, #"{"type":"restore.request","version":1,"requestId":"r1","project":"p1","backupId":"b1","target":{"kind":"instance","project":"p2","networks":[]},"requestedBy":{"userId":"u"}}"#),
            (.cancel, #"{"type":"cancel.request","version":1,"requestId":"r1","jobId":"j1","project":"p1","requestedBy":null}"#),
            (.task, #"{"type":"task","version":1,"taskId":"\#(task255)","kind":"transfer","createdAt":"2026-01-01T01:00:00.123456+01:00","range":{"offset":18446744073709551614,"length":1},"parameters":{"a":[1,"x",null]},"job":{"jobId":"j1","requestId":"r1","operation":"restore","project":"p1","instance":null}}"#),
            (.result, #"{"type":"result","version":1,"resultId":"r1","status":"failed","reason":"","at":"2026-01-01T00:00:00Z","job":null,"details":{}}"#),
            (.result, #"{"type":"result","version":1,"resultId":"r1","status":"succeeded","reason":null,"at":"2026-01-01T00:00:00-00:00","progress":{"bytesDone":0,"bytesTotal":0,"bytesPerSecond":null}}"#),
        ]
        for kind in MessageKind.allCases {
            let rows = table.filter { $0.0 == kind }.map { body($0.1) }
            for (document, errors) in zip(rows, try validate(rows, against: kind)) {
                let text = String(decoding: document, as: UTF8.self)
                XCTAssertEqual(errors, [], "schema refuses \(text)")
                do { try kind.decode(document) } catch { XCTFail("Swift refuses \(text): \(error)") }
            }
        }
    }

    /// Invalid documents, each refused by the schema and by the Swift decoder (with the error named).
    func testInvalidDocumentsRefusedByBoth() throws {
        let backup = #""type":"backup.request","version":1,"requestId":"r1","project":"p1","instance":"i1""#
        let restore = #""type":"restore.request","version":1,"requestId":"r1","project":"p1","backupId":"b1","requestedBy":{"userId":"u1"}"#
        let job = #""job":{"jobId":"j1","requestId":"r1","operation":"backup","project":"p1"}"#
        let task = #""type":"task","version":1,"taskId":"t1","createdAt":"2026-01-01T00:00:00Z","#
        let result = #""type":"result","version":1,"resultId":"r1","at":"2026-01-01T00:00:00Z""#
        let outOfRange = "a number does not fit its field (negative, fractional or too large where a whole number is expected)"
        let table: [(MessageKind, String, EventDecodingError)] = [
            (.backup, #"{\#(backup)}"#, .missingField(path: "mode")),
            (.backup, #"{\#(backup),"mode":"differential"}"#, .invalidValue(path: "mode", reason: #""differential" is not one of "full", "incremental""#)),
            (.backup, #"{\#(backup),"mode":"full","modee":"full"}"#, .unknownField(path: "modee")),
            (.backup, #"{"type":"backup.request","version":2,"requestId":"r1","project":"p1","instance":"i1","mode":"full"}"#,
             .unsupportedVersion(type: "backup.request", version: 2, supported: 1...1)),
            (.backup, #"{"version":1,"requestId":"r1","project":"p1","instance":"i1","mode":"full"}"#, .missingType),
            (.backup, #"{\#(backup),"mode":"full","priority":10}"#, .invalidValue(path: "priority", reason: "must be between 0 and 9")),
            (.backup, #"{\#(backup),"mode":"full","priority":-1}"#, .invalidValue(path: "priority", reason: "must be between 0 and 9")),
            (.backup, #"{\#(backup),"mode":"full","priority":"9"}"#, .wrongType(path: "priority", expected: "an integer")),
            (.backup, #"{"type":"backup.request","version":1,"requestId":"r1","project":"p 1","instance":"i1","mode":"full"}"#,
             .invalidValue(path: "project", reason: #"only letters, digits, "-", "_" are allowed"#)),
            (.backup, #"{"type":"backup.request","version":1,"requestId":"","project":"p1","instance":"i1","mode":"full"}"#,
             .invalidValue(path: "requestId", reason: "must not be empty")),
            (.backup, #"{\#(backup),"mode":"full","policy":"gold.plus"}"#, .invalidValue(path: "policy", reason: #"only letters, digits, "-", "_" are allowed"#)),
            (.backup, #"{\#(backup),"mode":"full","source":{"kind":"nfs","disks":[]}}"#,
             .invalidValue(path: "source.kind", reason: #""nfs" is not one of "files", "libvirt", "rbd", "cinder""#)),
            (.backup, #"{\#(backup),"mode":"full","source":{"disks":[]}}"#, .missingField(path: "source.kind")),
            (.backup, #"{\#(backup),"mode":"full","source":{"kind":"files","disks":[]}}"#, .invalidValue(path: "source.disks", reason: "must name at least one disk")),
            (.backup, #"{\#(backup),"mode":"full","source":{"kind":"files","disks":[{"name":"vda","path":"vda.img","format":"raw"}]}}"#,
             .invalidValue(path: "source.disks[0].path", reason: "must be an absolute path")),
            (.backup, #"{\#(backup),"mode":"full","source":{"kind":"files","disks":[{"name":"vda","path":"/a/../b","format":"raw"}]}}"#,
             .invalidValue(path: "source.disks[0].path", reason: #"must not contain "..""#)),
            (.backup, #"{\#(backup),"mode":"full","source":{"kind":"files","disks":[{"name":"vda","path":"/a","format":"vmdk"}]}}"#,
             .invalidValue(path: "source.disks[0].format", reason: #""vmdk" is not one of "raw", "qcow2""#)),
            (.backup, #"{\#(backup),"mode":"full","source":{"kind":"files","host":"h","disks":[{"name":"vda","path":"/a","format":"raw"}]}}"#,
             .unknownField(path: "source.host")),
            (.backup, #"{\#(backup),"mode":"full","source":{"kind":"libvirt","host":"h","domain":"d","disks":["vda","vda"]}}"#,
             .invalidValue(path: "source.disks", reason: "names a disk twice")),
            (.backup, #"{\#(backup),"mode":"full","source":{"kind":"libvirt","host":"h"}}"#, .missingField(path: "source.domain")),
            (.backup, #"{\#(backup),"mode":"full","source":{"kind":"libvirt","host":"","domain":"d"}}"#, .invalidValue(path: "source.host", reason: "must not be empty")),
            (.backup, #"{\#(backup),"mode":"full","source":{"kind":"libvirt","host":"h\u0007","domain":"d"}}"#,
             .invalidValue(path: "source.host", reason: "contains control characters")),
            (.backup, #"{\#(backup),"mode":"full","source":{"kind":"rbd","cluster":"c.1","disks":[{"name":"vda","pool":"p","image":"i"}]}}"#,
             .invalidValue(path: "source.cluster", reason: #"only letters, digits, "-", "_" are allowed"#)),
            (.backup, #"{\#(backup),"mode":"full","labels":{"a":1}}"#, .wrongType(path: "labels.a", expected: "a string")),
            (.backup, #"{\#(backup),"mode":"full","requestedBy":{"userId":"u","role":"admin"}}"#, .unknownField(path: "requestedBy.role")),
            (.restore, #"{\#(restore)}"#, .missingField(path: "target")),
            (.restore, #"{\#(restore),"target":{"kind":"s3","bucket":"b"}}"#,
             .invalidValue(path: "target.kind", reason: #""s3" is not one of "files", "libvirt", "rbd", "instance""#)),
            (.restore, #"{\#(restore),"target":{"kind":"files","directory":"/srv"}}"#, .missingField(path: "target.format")),
            (.restore, #"{\#(restore),"target":{"kind":"instance","project":"p2","overwrite":true}}"#, .unknownField(path: "target.overwrite")),
            (.restore, #"{\#(restore),"target":{"kind":"rbd","cluster":"c","pool":"p","overwrite":"yes"}}"#, .wrongType(path: "target.overwrite", expected: "a boolean")),
            (.restore, #"{\#(restore),"target":{"kind":"libvirt","host":"h","storageDirectory":"images"}}"#,
             .invalidValue(path: "target.storageDirectory", reason: "must be an absolute path")),
            (.restore, #"{\#(restore),"target":{"kind":"instance","project":"p2","networks":[""]}}"#, .invalidValue(path: "target.networks[0]", reason: "must not be empty")),
            (.restore, #"{\#(restore),"target":{"kind":"files","directory":"/srv","format":"raw"},"disks":[]}"#, .invalidValue(path: "disks", reason: "must name at least one disk")),
            (.restore, #"{"type":"restore.request","version":1,"requestId":"r1","project":"p1","backupId":"b1","target":{"kind":"files","directory":"/srv","format":"raw"}}"#,
             .missingField(path: "requestedBy")),
            (.cancel, #"{"type":"cancel.request","version":1,"requestId":"r1","project":"p1"}"#, .missingField(path: "jobId")),
            (.cancel, #"{"type":"cancel.request","version":1,"requestId":"r1","jobId":"j:1","project":"p1"}"#,
             .invalidValue(path: "jobId", reason: #"only letters, digits, "-", "_" are allowed"#)),
            (.task, #"{\#(task)"kind":"snapshot"}"#, .missingField(path: "job")),
            (.task, #"{\#(task)"kind":"backup",\#(job)}"#,
             .invalidValue(path: "kind", reason: #""backup" is not one of "snapshot", "attach", "transfer", "finalize", "cleanup", "provision", "restore", "restore-finalize""#)),
            (.task, #"{"type":"task","version":1,"taskId":"t/1","createdAt":"2026-01-01T00:00:00Z","kind":"cleanup",\#(job)}"#,
             .invalidValue(path: "taskId", reason: #"only letters, digits, "-", "_", ".", ":" are allowed"#)),
            (.task, #"{"type":"task","version":1,"taskId":"t1","createdAt":"2026-01-01","kind":"cleanup",\#(job)}"#,
             .invalidValue(path: "createdAt", reason: #""2026-01-01" is not an RFC 3339 time"#)),
            (.task, #"{"type":"task","version":1,"taskId":"t1","createdAt":"2026-01-01T00:00:00Z trailing","kind":"cleanup",\#(job)}"#,
             .invalidValue(path: "createdAt", reason: #""2026-01-01T00:00:00Z trailing" is not an RFC 3339 time"#)),
            (.task, #"{\#(task)"kind":"transfer","range":{"offset":0,"length":0},\#(job)}"#, .invalidValue(path: "range.length", reason: "must be positive")),
            (.task, #"{\#(task)"kind":"transfer","range":{"offset":-1,"length":1},\#(job)}"#,
             .invalidValue(path: "(message)", reason: outOfRange)),
            (.task, #"{\#(task)"kind":"transfer","range":{"offset":0.5,"length":1},\#(job)}"#, .invalidValue(path: "(message)", reason: outOfRange)),
            (.backup, #"{\#(backup),"mode":"full","priority":99999999999999999999}"#, .invalidValue(path: "(message)", reason: outOfRange)),
            (.task, #"{\#(task)"kind":"cleanup","job":{"jobId":"j1","requestId":"r1","operation":"copy","project":"p1"}}"#,
             .invalidValue(path: "job.operation", reason: #""copy" is not one of "backup", "restore", "cancel""#)),
            (.task, #"{\#(task)"kind":"cleanup","job":{"jobId":"j1","requestId":"r1","operation":"backup"}}"#, .missingField(path: "job.project")),
            (.task, #"{\#(task)"kind":"cleanup","parameters":[],\#(job)}"#, .wrongType(path: "parameters", expected: "an object")),
            (.result, #"{\#(result),"status":"failed"}"#, .missingField(path: "reason")),
            (.result, #"{\#(result),"status":"rejected","reason":null}"#, .missingField(path: "reason")),
            (.result, #"{\#(result),"status":"finished"}"#,
             .invalidValue(path: "status", reason: #""finished" is not one of "accepted", "started", "progress", "succeeded", "failed", "rejected", "cancelled""#)),
            (.result, #"{"type":"result","version":1,"resultId":"r1","status":"started"}"#, .missingField(path: "at")),
            (.result, #"{\#(result),"status":"progress","progress":{"bytesDone":1}}"#, .missingField(path: "progress.bytesTotal")),
            (.result, #"{\#(result),"status":"started","task":{"taskId":"t1","kind":"transfer","attempt":"2"}}"#, .wrongType(path: "task.attempt", expected: "an integer")),
            (.result, #"{\#(result),"status":"rejected","reason":"x","rejected":{"exchange":"e","routingKey":"k","queue":"q"}}"#,
             .missingField(path: "rejected.deadLetterQueue")),
            (.result, #"{\#(result),"status":"succeeded","details":{"fallback":true}}"#, .wrongType(path: "details.fallback", expected: "a string")),
            (.result, #"{\#(result),"status":"succeeded","backupId":"b 1"}"#, .invalidValue(path: "backupId", reason: #"only letters, digits, "-", "_" are allowed"#)),
        ]
        for kind in MessageKind.allCases {
            let rows = table.filter { $0.0 == kind }
            XCTAssertFalse(rows.isEmpty, "no invalid \(kind) documents")
            let verdicts = try validate(rows.map { body($0.1) }, against: kind)
            for (row, errors) in zip(rows, verdicts) {
                XCTAssertFalse(errors.isEmpty, "schema \(kind.schemaFile) accepts \(row.1)")
                do {
                    try kind.decode(body(row.1))
                    XCTFail("Swift accepts \(row.1)")
                } catch {
                    XCTAssertEqual(error, row.2, row.1)
                }
            }
        }
    }
}
