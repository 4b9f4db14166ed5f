import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Lets any thread wake a broker thread that sleeps in `poll(2)` on its socket.
/// (A self-pipe: its read end sits in the same `poll` as the broker socket.)
final class Wakeup: Sendable {
    private let descriptor: Int32
    private let writeEnd: Int32

    init() {
        var ends: [Int32] = [0, 0]
        precondition(pipe(&ends) == 0, "pipe failed: \(errno)")
        for end in ends {
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
        }
        descriptor = ends[0]
        writeEnd = ends[1]
    }

    deinit {
        Glibc.close(descriptor)
        Glibc.close(writeEnd)
    }

    func signal() {
        var one: UInt8 = 1
        _ = Glibc.write(writeEnd, &one, 1)
    }

    private func drain() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while Glibc.read(descriptor, &buffer, buffer.count) > 0 {}
    }

    /// Sleeps until the socket has data, the wakeup is signalled, or `timeout` seconds pass.
    /// Frames already buffered inside librabbitmq count as data: `poll` cannot see them.
    func wait(for connection: AMQPConnection?, timeout: Double) {
        if let connection, connection.hasBufferedInput { return }
        var fds = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)]
        if let connection, connection.socketDescriptor >= 0 {
            fds.append(pollfd(fd: connection.socketDescriptor, events: Int16(POLLIN), revents: 0))
        }
        _ = poll(&fds, nfds_t(fds.count), Int32(max(0, timeout) * 1000))
        if fds[0].revents != 0 { drain() }
    }
}

/// A mailbox of commands for a broker thread, filled from any thread.
final class Mailbox<Command: Sendable>: Sendable {
    private let commands = Mutex<[Command]>([])
    let wakeup = Wakeup()

    func post(_ command: Command) {
        let wasEmpty = commands.withLock { queue in
            queue.append(command)
            return queue.count == 1
        }
        if wasEmpty { wakeup.signal() }
    }

    func post(contentsOf batch: [Command]) {
        guard !batch.isEmpty else { return }
        let wasEmpty = commands.withLock { queue in
            let empty = queue.isEmpty
            queue.append(contentsOf: batch)
            return empty
        }
        if wasEmpty { wakeup.signal() }
    }

    func take() -> [Command] {
        commands.withLock { queue in
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
    }
}

/// A counter shared between a broker thread and the async side.
final class Counter: Sendable {
    private let atomic = Atomic<Int>(0)
    func increment() { atomic.add(1, ordering: .relaxed) }
    var value: Int { atomic.load(ordering: .relaxed) }
}

/// Exponential backoff with full jitter for reconnects: 0.1 s doubling to `cap`.
struct Backoff {
    var attempt = 0
    var base = 0.1
    var cap = 10.0

    mutating func next() -> Double {
        defer { attempt += 1 }
        let ceiling = min(cap, base * pow(2, Double(min(attempt, 16))))
        return Double.random(in: ceiling / 2...ceiling)
    }

    mutating func reset() { attempt = 0 }
}

/// Starts `body` on a new OS thread of its own, so blocking librabbitmq calls never occupy one
/// of the few threads of Swift's cooperative pool.
func startBrokerThread(name: String, _ body: @escaping @Sendable () -> Void) {
    let thread = Thread(block: body)
    thread.name = name
    thread.start()
}

/// A one-shot signal a thread raises when it has finished, awaited from async code.
final class Completion: Sendable {
    private let state = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func finish() {
        let waiters = state.withLock { state in
            state.done = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state in
                if state.done { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }
}
