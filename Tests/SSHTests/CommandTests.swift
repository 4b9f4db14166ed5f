import Crypto
import Foundation
import SSH
import XCTest

/// Remote commands on the real sshd: output, status, big streams both ways, timeouts.
final class CommandTests: XCTestCase {
    private var server: TestServer!
    /// A directory on the "remote" host (loopback, so the same file system), removed afterwards.
    private var remoteDirectory: String!

    override func setUpWithError() throws {
        server = try TestServer.current()
        remoteDirectory = try temporaryDirectory(self)
    }

    private func connect(operationTimeout: Double = 30, keepalive: Int = 15) throws -> SSHSession {
        try SSHSession(connectingTo: server.endpoint(operationTimeout: operationTimeout, keepalive: keepalive))
    }

    func testRunReportsStatusStdoutAndStderr() throws {
        let session = try connect()
        let result = try session.run("echo out; echo err >&2; exit 3")
        XCTAssertEqual(result.status, 3)
        XCTAssertEqual(result.stdout, Data("out\n".utf8))
        XCTAssertEqual(result.stderr, "err\n")
        guard case .commandFailed(let command, 3, let stderr)? = sshError({ try result.check("the command") }) else { return XCTFail() }
        XCTAssertEqual(command, "the command")
        XCTAssertEqual(stderr, "err")

        XCTAssertEqual(try session.run("true").check("true").status, 0)
        XCTAssertEqual(try session.run("kill -TERM $$").status, 128 + 15, "killed by a signal: 128 + its number")
    }

    func testRunWritesInputThenEOF() throws {
        let session = try connect()
        let input = Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        XCTAssertEqual(try session.run("cat", input: input).stdout, input)
        XCTAssertEqual(String(decoding: try session.run("wc -c", input: input).stdout, as: UTF8.self), "\(input.count)\n")
    }

    func testOutputBeyondTheLimitIsAnErrorAndTheSessionGoesOn() throws {
        let session = try connect()
        let error = sshError { try session.run("head -c 10000000 /dev/zero", outputLimit: 100_000) }
        XCTAssertTrue("\(error.map(String.init(describing:)) ?? "")".contains("exceeds the limit"))
        XCTAssertEqual(try session.run("echo still here").stdout, Data("still here\n".utf8))
    }

    func testStreamOf64MiBMatchesTheRemoteSHA256() throws {
        let session = try connect()
        let file = remoteDirectory + "/random"
        let remote = try session.run("head -c 67108864 /dev/urandom | tee \(file) | sha256sum").check("make the file")
        var hash = SHA256()
        var received = 0
        var pieces = 0
        let result = try session.stream("cat \(file)") { piece in
            hash.update(bufferPointer: piece)
            received += piece.count
            pieces += 1
        }
        XCTAssertEqual(result.status, 0)
        XCTAssertTrue(result.stdout.isEmpty)
        XCTAssertEqual(received, 64 << 20)
        XCTAssertGreaterThan(pieces, 64, "handed over in pieces, not collected")
        XCTAssertEqual(hex(hash.finalize()), String(decoding: remote.stdout.prefix(64), as: UTF8.self))
    }

    func testStreamBodyErrorClosesTheChannelAndIsRethrown() throws {
        struct Enough: Error {}
        let session = try connect()
        var received = 0
        XCTAssertThrowsError(try session.stream("cat /dev/zero") { piece in
            received += piece.count
            if received > 4 << 20 { throw Enough() }
        }) { error in XCTAssertTrue(error is Enough, "\(error)") }
        XCTAssertEqual(try session.run("echo next").stdout, Data("next\n".utf8))
    }

    /// 10 MiB to stderr and 10 MiB to stdout, in both orders: the shared window must never
    /// leave one stream full while we wait on the other. Keepalives off, so a deadlock would
    /// surface as a timeout instead of being kept alive.
    func testStderrFloodDoesNotDeadlock() throws {
        let session = try connect(operationTimeout: 20, keepalive: 0)
        for command in [
            "head -c 10485760 /dev/zero >&2; head -c 10485760 /dev/zero",
            "head -c 10485760 /dev/zero; head -c 10485760 /dev/zero >&2",
            "for i in $(seq 40); do head -c 262144 /dev/zero >&2; head -c 262144 /dev/zero; done",
        ] {
            var received = 0
            let result = try session.stream(command) { received += $0.count }
            XCTAssertEqual(result.status, 0, command)
            XCTAssertEqual(received, 10 << 20, command)
            XCTAssertTrue(result.stderr.hasPrefix("["), "only stderr's tail is kept, marked as cut")
            XCTAssertLessThan(result.stderr.utf8.count, 70_000)
        }
    }

    func testChannelWrites32MiBToAFile() throws {
        let session = try connect()
        let file = remoteDirectory + "/written"
        let channel = try session.open("cat > \(file)")
        var hash = SHA256()
        var piece = [UInt8](repeating: 0, count: 1 << 20)
        for index in 0..<32 {
            for offset in stride(from: 0, to: piece.count, by: 4096) { piece[offset] = UInt8(index); piece[offset + 1] = UInt8(offset >> 12) }
            hash.update(data: piece)
            try piece.withUnsafeBytes { try channel.write($0) }
        }
        let result = try channel.finish()
        XCTAssertEqual(result.status, 0, result.stderr)
        let remote = try session.run("sha256sum \(file)").check("sha256sum")
        XCTAssertEqual(hex(hash.finalize()), String(decoding: remote.stdout.prefix(64), as: UTF8.self))
    }

    /// A command that answers everything it reads (`cat`): writing must keep draining its
    /// stdout or both sides would wait on full windows.
    func testChannelToACommandThatPrintsWhileReading() throws {
        let session = try connect(operationTimeout: 20, keepalive: 0)
        let channel = try session.open("cat; echo done >&2")
        let piece = [UInt8](repeating: 0x5a, count: 1 << 20)
        for _ in 0..<16 { try piece.withUnsafeBytes { try channel.write($0) } }
        let result = try channel.finish()
        XCTAssertEqual(result.status, 0)
        XCTAssertEqual(result.stdout.count, 64 << 10, "the first 64 KiB of stdout are kept")
        XCTAssertEqual(result.stderr, "done\n")
    }

    func testAQuietCommandTimesOutAndTheSessionIsThenUnusable() throws {
        let session = try connect(operationTimeout: 1)
        guard case .timedOut? = sshError({ try session.run("sleep 30") }) else { return XCTFail() }
        guard case .disconnected? = sshError({ try session.run("true") }) else { return XCTFail() }
    }

    /// Keepalive replies show the server is alive: a command quiet for longer than the
    /// operation timeout still completes.
    func testKeepalivesCarryAQuietCommandPastTheTimeout() throws {
        // libssh2 sends keepalives at 2 s at the most often (it turns 1 into 2).
        let session = try connect(operationTimeout: 3, keepalive: 1)
        XCTAssertEqual(try session.run("sleep 5; echo done").stdout, Data("done\n".utf8))
    }

    /// The server stops answering mid-stream (its session process frozen with SIGSTOP, which is
    /// how a cut link looks from here): keepalives get no reply, and the stream fails with a
    /// timeout instead of hanging.
    func testAStalledServerTimesOutDespiteKeepalives() throws {
        let session = try connect(operationTimeout: 3, keepalive: 1)
        let parent = String(decoding: try session.run("echo $PPID").stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let serverProcess = try XCTUnwrap(pid_t(parent))
        defer { kill(serverProcess, SIGCONT) }
        var received = 0
        let error = sshError {
            try session.stream("cat /dev/zero") { piece in
                if received < 1 << 20, received + piece.count >= 1 << 20 { kill(serverProcess, SIGSTOP) }
                received += piece.count
            }
        }
        guard case .timedOut? = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertGreaterThanOrEqual(received, 1 << 20)
    }

    private func hex(_ digest: SHA256.Digest) -> String { digest.map { String(format: "%02x", $0) }.joined() }
}
