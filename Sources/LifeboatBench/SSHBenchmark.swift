import Foundation
import SSH

/// Throughput of Lifeboat's SSH client on the data path: `stream("cat FILE")` read into a
/// sink (how a backup reads a disk over SSH), and an `SSHChannel` writing the same amount into
/// `cat > /dev/null` (how a restore writes one). Timed from the command's start to its exit
/// status, on one session made beforehand; CPU is this process's user + system time.
struct SSHBenchmark {
    struct Configuration {
        var endpoint: SSHEndpoint
        var file: String
        var runs: Int
    }

    let configuration: Configuration

    func run() throws -> String {
        let session = try SSHSession(connectingTo: configuration.endpoint)
        let size = try session.run("stat -c %s \(configuration.file)").check("stat")
        guard let bytes = Int(String(decoding: size.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw SSHError.library("cannot read the size of \(configuration.file)")
        }
        var reads: [(seconds: Double, cpu: Double)] = []
        var writes: [(seconds: Double, cpu: Double)] = []
        for _ in 0..<configuration.runs {
            reads.append(try measure {
                var received = 0
                try session.stream("cat \(configuration.file)") { received += $0.count }.check("cat")
                guard received == bytes else { throw SSHError.library("read \(received) of \(bytes) bytes") }
            })
            writes.append(try measure {
                let channel = try session.open("cat > /dev/null")
                let piece = [UInt8](repeating: 0xa5, count: 1 << 20)
                for _ in 0..<(bytes >> 20) { try piece.withUnsafeBytes { try channel.write($0) } }
                try channel.finish().check("cat > /dev/null")
            })
        }
        // The best run: the machine is shared, and noise only ever slows a run down.
        let read = reads.min { $0.seconds < $1.seconds }!
        let write = writes.min { $0.seconds < $1.seconds }!
        let written = (bytes >> 20) << 20
        let fields: [(String, String)] = [
            ("client", "\"lifeboat\""), ("libssh2", "\"\(SSHSession.libraryVersion)\""), ("bytes", "\(bytes)"),
            ("runs", "\(configuration.runs)"),
            ("read_seconds", String(format: "%.3f", read.seconds)),
            ("read_mb_per_s", String(format: "%.1f", Double(bytes) / read.seconds / 1e6)),
            ("read_cpu_seconds", String(format: "%.2f", read.cpu)),
            ("write_seconds", String(format: "%.3f", write.seconds)),
            ("write_mb_per_s", String(format: "%.1f", Double(written) / write.seconds / 1e6)),
            ("write_cpu_seconds", String(format: "%.2f", write.cpu)),
        ]
        return "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
    }

    private func measure(_ body: () throws -> Void) throws -> (seconds: Double, cpu: Double) {
        let cpuBefore = cpuSeconds()
        let start = ContinuousClock.now
        try body()
        let elapsed = start.duration(to: .now)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return (seconds, cpuSeconds() - cpuBefore)
    }

    private func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}
