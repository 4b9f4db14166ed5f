import CSSH2
import Foundation

/// One authenticated SSH connection (libssh2 session) to a host, running commands over exec
/// channels.
///
/// Not `Sendable`: a libssh2 session is not thread-safe, so a session belongs to the one thread
/// that uses it (keep it off Swift's cooperative pool: every call blocks). After a timeout or a
/// broken connection the session refuses further work with `.disconnected`; make a new one.
public final class SSHSession {
    /// "SHA256:" and the unpadded base64 digest of the server's host key, as OpenSSH prints it.
    public let hostKeyFingerprint: String
    /// The host was unknown and its key was appended to known_hosts (trust on first use):
    /// the caller should log `hostKeyFingerprint`.
    public let hostKeyAddedOnFirstUse: Bool

    let session: OpaquePointer
    let socket: Int32
    let endpoint: SSHEndpoint
    /// Set when a failure may have left libssh2 mid-packet: nothing more is tried on it.
    var brokenBy: SSHError?

    /// The libssh2 this process runs with, e.g. "1.10.0".
    public static var libraryVersion: String { SSHLibrary.version }

    /// Connects, checks the host key against known_hosts and authenticates.
    ///
    /// The TCP connection is opened within `connectTimeoutSeconds`; the SSH handshake and
    /// authentication each wait at most `operationTimeoutSeconds`. Nothing is sent to a server
    /// whose host key is unknown (without trust on first use) or changed.
    public init(connectingTo endpoint: SSHEndpoint) throws(SSHError) {
        guard SSHLibrary.initialised else { throw .library("libssh2_init failed") }
        let socket = try TCPConnect.connect(host: endpoint.host, port: endpoint.port, timeoutSeconds: endpoint.connectTimeoutSeconds)
        guard let session = libssh2_session_init_ex(nil, nil, nil, nil) else {
            close(socket)
            throw .library("cannot create a session")
        }
        do throws(SSHError) {
            let (fingerprint, added) = try Self.establish(session: session, socket: socket, endpoint: endpoint)
            hostKeyFingerprint = fingerprint
            hostKeyAddedOnFirstUse = added
        } catch {
            let reason: Int32 = switch error {
            case .hostKeyUnknown, .hostKeyChanged: SSH_DISCONNECT_HOST_KEY_NOT_VERIFIABLE
            default: SSH_DISCONNECT_BY_APPLICATION
            }
            libssh2_session_set_timeout(session, 2000)
            _ = libssh2_session_disconnect_ex(session, reason, "", "")
            libssh2_session_free(session)
            close(socket)
            throw error
        }
        self.session = session
        self.socket = socket
        self.endpoint = endpoint
    }

    deinit {
        // A polite goodbye, bounded: a dead server must not hold up whoever drops the session.
        libssh2_session_set_blocking(session, 1)
        libssh2_session_set_timeout(session, 2000)
        if brokenBy == nil {
            _ = libssh2_session_disconnect_ex(session, SSH_DISCONNECT_BY_APPLICATION, "", "")
        } else {
            cutConnection()
        }
        libssh2_session_free(session)
        close(socket)
    }

    /// Shuts the socket down so that libssh2's frees, which try to send closes, fail at once
    /// instead of waiting for a server that is gone or out of step.
    func cutConnection() {
        if !connectionCut { _ = shutdown(socket, Int32(SHUT_RDWR)) }
        connectionCut = true
    }

    private var connectionCut = false

    /// Runs `command` to its end: `input` (if any) is written to its stdin, then EOF; its stdout
    /// is collected up to `outputLimit` bytes (more is an error and the command is abandoned)
    /// and the last 64 KiB of its stderr. The exit status is returned, not checked: see
    /// `SSHCommandResult.check`.
    public func run(_ command: String, input: Data? = nil, outputLimit: Int = 64 << 20) throws(SSHError) -> SSHCommandResult {
        let channel = try open(command)
        var stdout = Data()
        var exceeded = false
        var failure: SSHError?
        (input ?? Data()).withUnsafeBytes { input in
            do throws(SSHError) {
                try channel.pump(input: input, sendEOF: true, readToEnd: true) { piece in
                    guard stdout.count + piece.count <= outputLimit else {
                        exceeded = true
                        return false
                    }
                    stdout.append(piece.assumingMemoryBound(to: UInt8.self))
                    return true
                }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        if exceeded {
            channel.abandon()
            throw .library("the output of `\(command)` exceeds the limit of \(outputLimit) bytes")
        }
        var result = try channel.close()
        result.stdout = stdout
        return result
    }

    /// Runs `command` and hands its stdout to `body` piece by piece as it arrives (up to 256 KiB
    /// at a time; the buffer is only valid during the call). `input` is written to its stdin,
    /// then EOF. stderr is collected (its last 64 KiB), the result's `stdout` is empty.
    ///
    /// If `body` throws, the channel is closed (the remote command sees its output closed) and
    /// the error is rethrown. Keepalives go out while the command is quiet.
    public func stream(_ command: String, input: Data? = nil, into body: (UnsafeRawBufferPointer) throws -> Void) throws -> SSHCommandResult {
        let channel = try open(command)
        var bodyError: (any Error)?
        var failure: SSHError?
        (input ?? Data()).withUnsafeBytes { input in
            do throws(SSHError) {
                try channel.pump(input: input, sendEOF: true, readToEnd: true) { piece in
                    do {
                        try body(piece)
                        return true
                    } catch {
                        bodyError = error
                        return false
                    }
                }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        if let bodyError {
            channel.abandon()
            throw bodyError
        }
        return try channel.close()
    }

    /// Starts `command` on an exec channel whose stdin the caller writes in pieces
    /// (`SSHChannel.write`) and then ends (`SSHChannel.finish`): how a restore streams disk
    /// data into `dd` or `cat > file` on the host.
    public func open(_ command: String) throws(SSHError) -> SSHChannel {
        try SSHChannel(session: self, command: command)
    }

    // MARK: - Internals shared with SSHChannel

    var operationTimeoutSeconds: Double { endpoint.operationTimeoutSeconds }

    /// Throws the failure that made this session unusable, if any.
    func checkUsable() throws(SSHError) {
        if let brokenBy { throw .disconnected(reason: "the session to \(endpoint.displayName) is unusable after an earlier failure (\(brokenBy))") }
    }

    /// Remembers a failure after which libssh2's state cannot be trusted (a timeout mid-packet,
    /// a broken socket, a protocol error) and returns it.
    @discardableResult
    func broken(_ error: SSHError) -> SSHError {
        switch error {
        case .timedOut, .disconnected, .library: if brokenBy == nil { brokenBy = error }
        default: break
        }
        return error
    }

    func error(_ code: Int, doing operation: String) -> SSHError {
        Self.error(session, code: Int32(truncatingIfNeeded: code), doing: "\(operation) on \(endpoint.displayName)")
    }

    /// libssh2's last error as ours: timeouts and socket failures by kind, the rest with
    /// libssh2's own message.
    static func error(_ session: OpaquePointer, code: Int32, doing operation: String) -> SSHError {
        let message = lastErrorMessage(session)
        switch code {
        case LIBSSH2_ERROR_TIMEOUT, LIBSSH2_ERROR_SOCKET_TIMEOUT:
            return .timedOut(operation: operation)
        case LIBSSH2_ERROR_SOCKET_SEND, LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_DISCONNECT, LIBSSH2_ERROR_BAD_SOCKET:
            return .disconnected(reason: "\(operation): \(message)")
        default:
            return .library("\(operation): \(message) (\(code))")
        }
    }

    static func lastErrorMessage(_ session: OpaquePointer) -> String {
        var message: UnsafeMutablePointer<CChar>?
        var length: Int32 = 0
        _ = libssh2_session_last_error(session, &message, &length, 0)
        guard let message, length > 0 else { return "unknown error" }
        return String(decoding: UnsafeRawBufferPointer(start: message, count: Int(length)), as: UTF8.self)
    }

    // MARK: - Connecting

    /// Handshake, host-key check, keepalive settings and authentication on a fresh session.
    private static func establish(session: OpaquePointer, socket: Int32, endpoint: SSHEndpoint) throws(SSHError) -> (String, Bool) {
        let name = endpoint.displayName
        libssh2_session_set_blocking(session, 1)
        // libssh2 1.10 measures a blocking call's elapsed time in whole seconds (time()): a
        // 1 s timeout fires at once when the call straddles a second boundary. Two seconds is
        // the least it honours.
        libssh2_session_set_timeout(session, max(2000, Int(endpoint.operationTimeoutSeconds * 1000)))

        let knownHosts = try KnownHosts(session: session, path: endpoint.knownHostsFile)
        let methods = knownHosts.preferredMethods(host: endpoint.host, port: endpoint.port)
        guard libssh2_session_method_pref(session, LIBSSH2_METHOD_HOSTKEY, methods) == 0 else {
            throw error(session, code: libssh2_session_last_errno(session), doing: "setting host key methods \(methods)")
        }

        let handshake = libssh2_session_handshake(session, libssh2_socket_t(socket))
        guard handshake == 0 else {
            if handshake == LIBSSH2_ERROR_TIMEOUT { throw .timedOut(operation: "SSH handshake with \(name)") }
            throw .connectFailed(host: endpoint.host, port: endpoint.port, reason: "SSH handshake failed: \(lastErrorMessage(session))")
        }

        guard let key = HostKey(session: session) else { throw .library("the server \(name) presented no usable host key") }
        var added = false
        switch try knownHosts.check(host: endpoint.host, port: endpoint.port, key: key) {
        case .match:
            break
        case .mismatch:
            throw .hostKeyChanged(host: endpoint.host, port: endpoint.port, fingerprint: key.fingerprint, knownHostsFile: endpoint.knownHostsFile)
        case .unknown:
            guard endpoint.trustOnFirstUse else {
                throw .hostKeyUnknown(host: endpoint.host, port: endpoint.port, fingerprint: key.fingerprint, knownHostsFile: endpoint.knownHostsFile)
            }
            switch try KnownHosts.append(path: endpoint.knownHostsFile, session: session, host: endpoint.host, port: endpoint.port, key: key) {
            case .unknown: added = true
            case .match: break  // another process recorded the same key meanwhile
            case .mismatch:
                throw .hostKeyChanged(host: endpoint.host, port: endpoint.port, fingerprint: key.fingerprint, knownHostsFile: endpoint.knownHostsFile)
            }
        }

        if endpoint.keepaliveSeconds > 0 {
            libssh2_keepalive_config(session, 1, UInt32(endpoint.keepaliveSeconds))
        }
        try Authentication.authenticate(session: session, endpoint: endpoint)
        return (key.fingerprint, added)
    }
}

extension SSHSession {
    /// This side's address of the connection (numeric): the address the hypervisor can reach
    /// the worker at, on the network the operator chose for SSH.
    public var localAddress: String? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
        }
        guard named == 0 else { return nil }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let found = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, length, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST)
            }
        }
        return found == 0 ? String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
    }
}
