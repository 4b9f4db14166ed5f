// lifeboat-bench: throughput of Lifeboat's AMQP layer against a real broker, for
// scripts/bench-amqp.sh, and of its SSH client against a real sshd, for scripts/bench-ssh.sh. It measures; it asserts nothing about time. The last line it prints
// is one JSON object, so a script can compare it with a baseline measured in the same run.
import AMQP
import Foundation
import Logging
import SSH

let usage = """
    usage: lifeboat-bench amqp --url URL [--messages N] [--size BYTES] [--prefetch N] [--window N] [--batch N]
      Publishes N persistent messages of BYTES bytes to a fresh quorum queue with confirms
      (ConfirmingPublisher, batches of --batch, at most --window unconfirmed), then consumes and
      acks them all (AMQPConsumer, --prefetch), deletes the queue and prints one JSON line.
    usage: lifeboat-bench ssh --port PORT --key FILE --known-hosts FILE --file REMOTE_FILE [--host H] [--user U] [--runs N]
      Streams REMOTE_FILE (`cat`) into a sink and writes as many bytes into `cat > /dev/null`,
      best of N runs, and prints one JSON line.
    """

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(2)
}

/// `--name value` pairs after the benchmark's name.
struct Options {
    private var values: [String: String] = [:]

    init(_ raw: ArraySlice<String>) {
        var it = raw.makeIterator()
        while let argument = it.next() {
            guard argument.hasPrefix("--"), let value = it.next() else { fail(usage) }
            values[String(argument.dropFirst(2))] = value
        }
    }

    func string(_ name: String, _ fallback: String) -> String { values[name] ?? fallback }

    func int(_ name: String, _ fallback: Int) -> Int {
        guard let text = values[name] else { return fallback }
        guard let value = Int(text), value > 0 else { fail("--\(name) wants a positive integer, not \"\(text)\"") }
        return value
    }
}

// The library logs connects at info; a benchmark's output is its figures, so warnings only.
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .warning
    return handler
}

let arguments = CommandLine.arguments
guard arguments.count >= 2, ["amqp", "ssh"].contains(arguments[1]) else { fail(usage) }
let options = Options(arguments.dropFirst(2))

if arguments[1] == "ssh" {
    let endpoint = SSHEndpoint(
        host: options.string("host", "127.0.0.1"), port: options.int("port", 2299), user: options.string("user", "root"),
        authentication: .publicKey(privateKeyFile: options.string("key", ""), passphrase: nil),
        knownHostsFile: options.string("known-hosts", ""))
    do {
        print(try SSHBenchmark(configuration: .init(endpoint: endpoint, file: options.string("file", ""), runs: options.int("runs", 3))).run())
        exit(0)
    } catch {
        fail("lifeboat-bench: \(error)")
    }
}
let configuration = AMQPBenchmark.Configuration(
    url: options.string("url", "amqp://guest:guest@127.0.0.1:5689/"),
    messages: options.int("messages", 20_000),
    size: options.int("size", 256),
    prefetch: options.int("prefetch", 300),
    window: options.int("window", 2048),
    batch: options.int("batch", 1000))

do {
    let result = try await AMQPBenchmark(configuration).run()
    print(result.json)
} catch {
    fail("lifeboat-bench: \(error)")
}
