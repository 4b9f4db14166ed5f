import CSSH2
import Foundation

/// A remote command on an exec channel of a session: its stdin written by the caller in
/// pieces, its output drained meanwhile, its exit status at the end.
///
/// `SSHSession.run` and `.stream` use one internally; `SSHSession.open` hands one out for
/// streaming stdin (a restore writing a disk). Like its session, it belongs to one thread.
/// Dropping it unfinished closes the channel.
public final class SSHChannel {
    /// Bytes asked for per read: fewer, larger reads cost less CPU per byte in libssh2.
    static let readSize = 256 << 10
    /// The receive window offered to the server: several reads' worth, so the server never
    /// waits for a window adjustment while we decrypt.
    static let windowSize: UInt32 = 8 << 20
    /// The largest packet the server may send: OpenSSH's and libssh2's usual 32 KiB.
    static let packetSize: UInt32 = 32 << 10
    /// How much of stdout `finish` keeps (the rest is drained and dropped), and of stderr.
    static let keptOutput = 64 << 10

    let owner: SSHSession
    let command: String
    private var channel: OpaquePointer?
    private let buffer: UnsafeMutableRawBufferPointer
    private var stderr = TailBuffer(limit: keptOutput)
    private var keptStdout = Data()
    private var stdoutEnded = false
    private var stderrEnded = false
    private var eofSent = false
    /// A call that returned EAGAIN with part of its packet still unsent: libssh2 requires that
    /// exact call to be repeated before anything else is sent on the session.
    private var pending: Pending?
    private enum Pending { case write, eof, read }

    init(session: SSHSession, command: String) throws(SSHError) {
        try session.checkUsable()
        owner = session
        self.command = command
        libssh2_session_set_blocking(session.session, 1)
        guard let channel = libssh2_channel_open_ex(session.session, "session", 7, Self.windowSize, Self.packetSize, nil, 0) else {
            throw session.broken(session.error(Int(libssh2_session_last_errno(session.session)), doing: "opening a channel for `\(command)`"))
        }
        let started = libssh2_channel_process_startup(channel, "exec", 4, command, UInt32(command.utf8.count))
        guard started == 0 else {
            let error = session.error(Int(started), doing: "starting `\(command)`")
            libssh2_channel_free(channel)
            throw session.broken(error)
        }
        self.channel = channel
        buffer = .allocate(byteCount: Self.readSize, alignment: 16)
    }

    deinit {
        if channel != nil { abandon() }
        buffer.deallocate()
    }

    /// Writes all of `bytes` to the command's stdin, draining its output meanwhile (a command
    /// that prints while it reads must not stall): stdout beyond the first 64 KiB is dropped.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(SSHError) {
        try pump(input: bytes, sendEOF: false, readToEnd: false, onStdout: keep)
    }

    /// Ends the command's stdin, reads its output to the end (the first 64 KiB of stdout and
    /// the last 64 KiB of stderr are kept), waits for its exit status and closes the channel.
    public func finish() throws(SSHError) -> SSHCommandResult {
        try pump(input: UnsafeRawBufferPointer(start: nil, count: 0), sendEOF: true, readToEnd: true, onStdout: keep)
        var result = try close()
        result.stdout = keptStdout
        return result
    }

    private func keep(_ piece: UnsafeRawBufferPointer) -> Bool {
        let room = Self.keptOutput - keptStdout.count
        if room > 0 { keptStdout.append(piece.prefix(room).assumingMemoryBound(to: UInt8.self)) }
        return true
    }

    /// Moves data until `input` is written (and EOF sent, if asked) and, if asked, both output
    /// streams have ended; `onStdout` returning false stops early.
    ///
    /// The session is non-blocking here: stdout and stderr share the channel's window, so
    /// a blocking read of one while the command fills the other could wait forever, and a
    /// blocking write could wait for a window the command never opens because its stdout is
    /// full. When nothing moves, poll(2) waits on the socket in the directions libssh2 is
    /// blocked on, sending keepalives; any sign of life from the server (bytes arriving,
    /// our bytes leaving) restarts the operation timeout.
    func pump(input: UnsafeRawBufferPointer, sendEOF: Bool, readToEnd: Bool, onStdout: (UnsafeRawBufferPointer) -> Bool) throws(SSHError) {
        guard let channel else { throw .library("the channel of `\(command)` is already closed") }
        try owner.checkUsable()
        let session = owner.session
        libssh2_session_set_blocking(session, 0)
        defer { libssh2_session_set_blocking(session, 1) }
        var written = 0
        var quiet = Deadline(seconds: owner.operationTimeoutSeconds)
        var fruitlessPasses = 0

        func outboundBlocked() -> Bool { libssh2_session_block_directions(session) & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 }

        do throws(SSHError) {
            while true {
                var progressed = false

                if written < input.count, pending == nil || pending == .write {
                    let start = input.baseAddress!.advanced(by: written).assumingMemoryBound(to: CChar.self)
                    let count = libssh2_channel_write_ex(channel, 0, start, min(input.count - written, Self.readSize))
                    if count >= 0 {
                        written += count
                        progressed = progressed || count > 0
                        pending = nil
                    } else if count == LIBSSH2_ERROR_EAGAIN {
                        pending = outboundBlocked() ? .write : nil
                    } else {
                        throw owner.error(count, doing: "writing to the stdin of `\(command)`")
                    }
                }

                if sendEOF, !eofSent, written == input.count, pending == nil || pending == .eof {
                    let code = libssh2_channel_send_eof(channel)
                    if code == 0 {
                        eofSent = true
                        progressed = true
                        pending = nil
                    } else if code == LIBSSH2_ERROR_EAGAIN {
                        pending = outboundBlocked() ? .eof : nil
                    } else {
                        throw owner.error(Int(code), doing: "closing the stdin of `\(command)`")
                    }
                }

                var endedWithoutEOF = 0
                if pending == nil || pending == .read {
                    for stream: Int32 in [0, SSH_EXTENDED_DATA_STDERR] where !(stream == 0 ? stdoutEnded : stderrEnded) {
                        let count = libssh2_channel_read_ex(channel, stream, buffer.baseAddress, buffer.count)
                        if count > 0 {
                            progressed = true
                            pending = nil
                            let piece = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
                            if stream == 0 {
                                if !onStdout(piece) { return }
                            } else {
                                stderr.append(piece)
                            }
                        } else if count == 0 {
                            // 0 is "end of this stream" once the channel is at EOF; libssh2 also
                            // returns 0 after a close without EOF (counted below).
                            pending = nil
                            if libssh2_channel_eof(channel) != 0 {
                                if stream == 0 { stdoutEnded = true } else { stderrEnded = true }
                                progressed = true
                            } else {
                                endedWithoutEOF += 1
                            }
                        } else if count == LIBSSH2_ERROR_EAGAIN {
                            pending = outboundBlocked() ? .read : nil
                        } else {
                            throw owner.error(count, doing: "reading the output of `\(command)`")
                        }
                    }
                }

                if written == input.count, !sendEOF || eofSent, !readToEnd || (stdoutEnded && stderrEnded) { return }
                if progressed {
                    fruitlessPasses = 0
                    quiet.restart()
                    continue
                }
                // A read drains the socket into libssh2's queue for both streams, so the last
                // read of a pass may have queued data for the other stream while answering
                // EAGAIN for its own: that data is read now, not after a poll that might wait
                // for a server whose window it fills.
                if pending == nil,
                   (!stdoutEnded && libssh2_poll_channel_read(channel, 0) != 0) || (!stderrEnded && libssh2_poll_channel_read(channel, 1) != 0) {
                    continue
                }
                if pending == nil, endedWithoutEOF > 0 {
                    // Reads answer 0 without the channel being at EOF: a channel closed without
                    // EOF (or a packet libssh2 consumed without data). Retry at once; a few
                    // such passes in a row mean the output is over.
                    fruitlessPasses += 1
                    if fruitlessPasses >= 3 {
                        stdoutEnded = true
                        stderrEnded = true
                    }
                    continue
                }
                try wait(for: &quiet)
            }
        } catch {
            throw owner.broken(error)
        }
    }

    /// Waits until the socket can move data in a direction libssh2 needs, at most until the
    /// operation timeout, sending a keepalive when one is due.
    private func wait(for quiet: inout Deadline) throws(SSHError) {
        let session = owner.session
        var untilKeepalive: Int32 = 0
        var entry = pollfd(fd: owner.socket, events: Int16(POLLOUT), revents: 0)
        // A keepalive may go out only when no packet is half sent (libssh2 cannot interleave
        // packets) and the socket has room for all of it.
        if pending == nil, poll(&entry, 1, 0) == 1, entry.revents & Int16(POLLOUT) != 0 {
            let code = libssh2_keepalive_send(session, &untilKeepalive)
            if code != 0, code != LIBSSH2_ERROR_EAGAIN { throw owner.error(Int(code), doing: "sending a keepalive") }
        }
        // A half-sent packet waits for room in the socket only: polling for input too would
        // spin on the stdout that may not be read until the packet is out.
        let directions = libssh2_session_block_directions(session)
        entry = pollfd(fd: owner.socket, events: Int16(pending == nil ? POLLIN : POLLOUT), revents: 0)
        if directions & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 { entry.events |= Int16(POLLOUT) }
        var timeout = quiet.remainingMilliseconds
        if untilKeepalive > 0 { timeout = min(timeout, untilKeepalive * 1000) }
        let ready = poll(&entry, 1, timeout)
        if ready > 0 {
            quiet.restart()  // the server sent something, or took what we sent: it is alive
        } else if ready < 0, errno != EINTR {
            throw .library("poll: \(String(cString: strerror(errno)))")
        } else if quiet.expired {
            throw .timedOut(operation: "`\(command)` on \(owner.endpoint.displayName): nothing from the server for \(quiet.seconds.formatted()) s")
        }
    }

    /// After both output streams ended: close the channel, wait for the server's close (the
    /// exit status comes before it) and free the channel.
    func close() throws(SSHError) -> SSHCommandResult {
        guard let channel else { throw .library("the channel of `\(command)` is already closed") }
        let session = owner.session
        libssh2_session_set_blocking(session, 1)
        var code = libssh2_channel_close(channel)
        if code == 0, libssh2_channel_eof(channel) != 0 { code = libssh2_channel_wait_closed(channel) }
        guard code == 0 else {
            abandon()
            throw owner.broken(owner.error(Int(code), doing: "closing the channel of `\(command)`"))
        }
        let status = exitStatus(channel)
        libssh2_channel_free(channel)
        self.channel = nil
        return SSHCommandResult(status: status, stdout: Data(), stderr: stderr.text)
    }

    /// The exit status, or 128 + the signal's number for a command killed by a signal.
    private func exitStatus(_ channel: OpaquePointer) -> Int32 {
        var signal: UnsafeMutablePointer<CChar>?
        var length = 0
        if libssh2_channel_get_exit_signal(channel, &signal, &length, nil, nil, nil, nil) == 0, let signal {
            defer { free(signal) }
            let name = String(decoding: UnsafeRawBufferPointer(start: signal, count: length), as: UTF8.self)
            return Self.signalNumbers[name].map { 128 + $0 } ?? -1
        }
        return libssh2_channel_get_exit_status(channel)
    }

    /// RFC 4254's signal names (without "SIG") and their Linux numbers.
    private static let signalNumbers: [String: Int32] = [
        "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "ABRT": 6, "FPE": 8, "KILL": 9, "USR1": 10,
        "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
    ]

    /// Gives up on the command: closes the channel without waiting for its output (the remote
    /// command sees a closed pipe) and frees it. Best effort; a failure marks the session
    /// broken, as libssh2 may be mid-packet.
    func abandon() {
        guard let channel else { return }
        self.channel = nil
        let session = owner.session
        libssh2_session_set_blocking(session, 1)
        if owner.brokenBy == nil {
            if pending != nil {
                // A half-sent packet blocks the close: only the call that started it may finish it.
                owner.broken(.disconnected(reason: "`\(command)` was abandoned with a packet half sent"))
            } else if libssh2_channel_close(channel) != 0 {
                owner.broken(owner.error(Int(libssh2_session_last_errno(session)), doing: "closing the channel of `\(command)`"))
            }
        }
        // On a broken session, libssh2 would wait out the timeout trying to send a close
        // nobody will read: cut the connection so that freeing fails fast instead.
        if owner.brokenBy != nil { owner.cutConnection() }
        libssh2_channel_free(channel)
    }
}

/// The last `limit` bytes of a stream (a command's stderr), however much it writes.
struct TailBuffer {
    let limit: Int
    private var bytes = Data()
    private var dropped = 0

    init(limit: Int) { self.limit = limit }

    mutating func append(_ piece: UnsafeRawBufferPointer) {
        bytes.append(piece.assumingMemoryBound(to: UInt8.self))
        if bytes.count > 2 * limit {
            let excess = bytes.count - limit
            bytes.removeFirst(excess)
            dropped += excess
        }
    }

    var text: String {
        let tail = bytes.suffix(limit)
        let cut = dropped + (bytes.count - tail.count)
        let body = String(decoding: tail, as: UTF8.self)
        return cut > 0 ? "[\(cut) earlier bytes dropped]\n" + body : body
    }
}
