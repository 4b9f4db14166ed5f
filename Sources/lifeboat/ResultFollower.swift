import AMQP
import ArgumentParser
import Events
import Foundation
import Publisher

/// Options shared by the commands that print results.
struct FollowOptions: ParsableArguments {
    @Flag(help: "Print each result as one JSON line (the message as published), for scripts.")
    var json = false

    @Option(help: "Stop at the first result with this status (default: a final one: succeeded, failed, rejected, cancelled).")
    var until: ResultStatus?

    @Option(help: "Give up after this many seconds.")
    var timeout: Double?
}

extension ResultStatus: ExpressibleByArgument {
    var isFinal: Bool { [.succeeded, .failed, .rejected, .cancelled].contains(self) }
}

/// Reads results from a queue of its own, bound to the results exchange before anything is sent.
final class ResultFollower: Sendable {
    let consumer: AMQPConsumer
    let queue: String

    /// `bindingKey` as monitors use it: `p1.#` (project), `*.i1.#` (instance), `*.*.j1.*` (job), `#`.
    init(settings: AMQPSettings, bindingKey: String) {
        queue = "lifeboat.watch.\(UUID().uuidString.prefix(8).lowercased())"
        var settings = settings
        settings.connectionName = "lifeboat-watch"
        let topology = LifeboatTopology.core + Topology(
            queues: [QueueSpec(name: queue, durable: false, exclusive: true, autoDelete: true)],
            bindings: [BindingSpec(queue: queue, exchange: LifeboatTopology.Exchange.results, routingKey: bindingKey)])
        consumer = AMQPConsumer(settings: settings, topology: topology, queues: [queue], prefetch: 100, name: "lifeboat-watch")
    }

    func ready() async { await consumer.waitUntilConsuming() }

    /// Prints results until one matches `options.until` (or a final status), or the timeout.
    /// Returns the exit code: 0 done, 1 the job failed or was rejected, 3 timed out.
    func follow(_ options: FollowOptions, requestId: String? = nil, stopAtFinal: Bool = true) async -> Int32 {
        let printer = ResultPrinter(json: options.json)
        let timer = options.timeout.map { seconds in
            Task { [consumer] in
                try? await Task.sleep(for: .seconds(seconds))
                if !Task.isCancelled { await consumer.shutdown(grace: 0) }
            }
        }
        defer { timer?.cancel() }
        for await delivery in consumer.deliveries {
            delivery.ack()
            guard let result = try? MessageCodec.decode(JobResult.self, from: delivery.body) else { continue }
            // A rejected request has no job yet: it is recognised by its message id.
            if let requestId, result.job?.requestId != requestId, result.rejected?.messageId != requestId { continue }
            printer.print(result, raw: delivery.body)
            let reachedUntil = options.until == result.status
            if reachedUntil || (stopAtFinal && result.status.isFinal) {
                await consumer.shutdown(grace: 0)
                printer.finish()
                return [.failed, .rejected].contains(result.status) ? 1 : 0
            }
        }
        printer.finish()
        if stopAtFinal || options.until != nil {
            FileHandle.standardError.write(Data("lifeboat: the awaited result did not come within the timeout\n".utf8))
        }
        return 3
    }
}

/// A person's view of results: one line per state change, a bar for progress.
final class ResultPrinter {
    let json: Bool
    let isTerminal = isatty(STDOUT_FILENO) != 0
    /// Ranges finish out of order on several workers: the bar only moves forward.
    private var furthest: [String: UInt64] = [:]

    init(json: Bool) { self.json = json }

    func print(_ result: JobResult, raw: Data) {
        if json {
            FileHandle.standardOutput.write(raw + Data("\n".utf8))
            return
        }
        if result.status == .progress, let progress = result.progress {
            let job = result.job?.jobId ?? ""
            guard progress.bytesDone > furthest[job] ?? 0 else { return }
            furthest[job] = progress.bytesDone
            let line = Self.bar(progress)
            if isTerminal {
                FileHandle.standardOutput.write(Data("\r\u{1B}[K\(line)".utf8))
            } else {
                Swift.print(line)
            }
            return
        }
        if isTerminal { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)) }
        var parts = [Timestamp.format(result.at), result.status.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)]
        if let job = result.job {
            parts.append("\(job.operation.rawValue) job \(job.jobId) (project \(job.project)\(job.instance.map { ", instance \($0)" } ?? ""))")
        }
        if let task = result.task { parts.append("task \(task.kind.rawValue)\(task.disk.map { " \($0)" } ?? "")") }
        if let backup = result.backupId { parts.append("backup \(backup)") }
        if let reason = result.reason { parts.append("— \(reason)") }
        if let details = result.details, !details.isEmpty {
            parts.append(details.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        }
        Swift.print(parts.joined(separator: "  "))
    }

    func finish() {
        if isTerminal && !json { Swift.print("") }
    }

    static func bar(_ progress: Events.Progress, width: Int = 30) -> String {
        let fraction = progress.bytesTotal == 0 ? 1 : min(1, Double(progress.bytesDone) / Double(progress.bytesTotal))
        let filled = Int(fraction * Double(width))
        var line = "[\(String(repeating: "#", count: filled))\(String(repeating: " ", count: width - filled))] "
        line += String(format: "%3.0f%%  %@ / %@", fraction * 100, bytes(progress.bytesDone), bytes(progress.bytesTotal))
        if let rate = progress.bytesPerSecond { line += "  \(bytes(UInt64(rate)))/s" }
        if let eta = progress.etaSeconds { line += String(format: "  ETA %.0fs", eta) }
        return line
    }

    static func bytes(_ count: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
    }
}
