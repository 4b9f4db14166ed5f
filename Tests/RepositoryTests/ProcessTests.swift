import Foundation
import XCTest
@testable import Repository

/// Behaviour across processes, with the repository-tool executable as the other process:
/// a writer killed with SIGKILL, and writers running side by side.
final class ProcessTests: XCTestCase {
    let chunk = 64 * 1024
    var scratch: ScratchDirectory!
    var repoPath: String { scratch.file("repo") }

    override func setUp() { scratch = ScratchDirectory() }
    override func tearDown() { scratch = nil }

    /// repository-tool is built beside the test bundle by `swift build` / `swift test`.
    private var toolURL: URL {
        get throws {
            var dir = Bundle(for: Self.self).bundleURL.deletingLastPathComponent()
            if !FileManager.default.fileExists(atPath: dir.appendingPathComponent("repository-tool").path) {
                dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            }
            let url = dir.appendingPathComponent("repository-tool")
            guard FileManager.default.isExecutableFile(atPath: url.path) else {
                // scripts/test.sh builds it and sets LIFEBOAT_STRICT_TESTS: there, missing is a failure.
                if ProcessInfo.processInfo.environment["LIFEBOAT_STRICT_TESTS"] != nil {
                    XCTFail("repository-tool is missing at \(url.path)")
                }
                throw XCTSkip("repository-tool not built next to the tests (\(url.path)); run `swift build` first")
            }
            return url
        }
    }

    private func tool(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = try toolURL
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        return process
    }

    private func runTool(_ arguments: [String]) throws {
        let process = try tool(arguments)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "repository-tool \(arguments.joined(separator: " "))")
    }

    private func image(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = scratch.file(name)
        try writeFile(path, bytes)
        return path
    }

    func testKill9MidBackupLeavesNothingVisibleAndRerunReusesChunks() throws {
        var rng = SeededBytes(seed: 31)
        let data = rng.bytes(40 * chunk)
        let path = try image("disk", data)
        _ = try Repository.create(path: repoPath, options: RepositoryOptions(chunkSize: chunk))

        let child = try tool(["backup", repoPath, path, "b1", "vda", "--delay-ms", "50"])
        // Wait until the child has stored a few chunks, then kill it mid-backup.
        let deadline = Date().addingTimeInterval(60)
        while try chunkFiles(repoPath).count < 5 && child.isRunning && Date() < deadline { usleep(10_000) }
        XCTAssertTrue(child.isRunning, "the child must still be writing when killed")
        kill(child.processIdentifier, SIGKILL)
        child.waitUntilExit()
        XCTAssertEqual(child.terminationReason, .uncaughtSignal)
        XCTAssertEqual(child.terminationStatus, SIGKILL)

        let repo = try Repository.open(path: repoPath)
        XCTAssertEqual(try repo.listBackups().count, 0, "a killed backup is not visible")
        let stored = try chunkFiles(repoPath).count
        XCTAssertGreaterThanOrEqual(stored, 5)
        XCTAssertLessThan(stored, 40)

        // The rerun (a fresh attempt of the same backup) succeeds and stores only what is missing.
        try runTool(["backup", repoPath, path, "b1", "vda"])
        let manifest = try repo.manifest("b1")
        XCTAssertEqual(manifest.disks[0].newChunks, 40 - stored, "chunks of the killed run were reused")
        XCTAssertEqual(try restored(repo, backup: "b1", scratch: scratch), data)
        XCTAssertTrue(try repo.verify().isHealthy)
    }

    func testTwoWriterProcessesOnOneRepository() throws {
        var rng = SeededBytes(seed: 32)
        let shared = rng.bytes(16 * chunk)
        let a = shared + rng.bytes(16 * chunk)
        let b = shared + textBytes(16 * chunk, seed: 33)
        let pathA = try image("a", a)
        let pathB = try image("b", b)
        _ = try Repository.create(path: repoPath, options: RepositoryOptions(chunkSize: chunk))

        // Two separate backups at once, sharing half their chunks.
        let first = try tool(["backup", repoPath, pathA, "a", "vda"])
        let second = try tool(["backup", repoPath, pathB, "b", "vda"])
        first.waitUntilExit()
        second.waitUntilExit()
        XCTAssertEqual([first.terminationStatus, second.terminationStatus], [0, 0])

        // One backup whose two halves are written by two processes at once, then committed.
        try runTool(["begin", repoPath, "split"])
        let low = try tool(["range", repoPath, pathB, "split", "vda", "0", "\(16 * chunk)"])
        let high = try tool(["range", repoPath, pathB, "split", "vda", "\(16 * chunk)", "\(16 * chunk)"])
        low.waitUntilExit()
        high.waitUntilExit()
        XCTAssertEqual([low.terminationStatus, high.terminationStatus], [0, 0])
        try runTool(["commit", repoPath, "split", "vda:\(b.count)"])

        let repo = try Repository.open(path: repoPath)
        XCTAssertEqual(Set(try repo.listBackups().map(\.id)), ["a", "b", "split"])
        XCTAssertEqual(try restored(repo, backup: "a", scratch: scratch), a)
        XCTAssertEqual(try restored(repo, backup: "b", scratch: scratch), b)
        XCTAssertEqual(try restored(repo, backup: "split", scratch: scratch), b)
        XCTAssertEqual(try chunkFiles(repoPath).count, 48, "shared chunks are stored once")
        XCTAssertTrue(try repo.verify().isHealthy)
    }
}
