/// Everything that can go wrong talking to an SSH server, in words an operator can act on.
///
/// Messages never contain passwords or passphrases.
public enum SSHError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No TCP connection or no SSH handshake (name resolution, refused, no answer in time).
    case connectFailed(host: String, port: Int, reason: String)
    /// The server's key is not in known_hosts and trust on first use is off.
    case hostKeyUnknown(host: String, port: Int, fingerprint: String, knownHostsFile: String)
    /// known_hosts has a different key for this host: refused, nothing was sent to the server.
    case hostKeyChanged(host: String, port: Int, fingerprint: String, knownHostsFile: String)
    /// The server refused every way we tried; `reason` says which methods it offers.
    case authenticationFailed(user: String, host: String, reason: String)
    /// The server did not answer within the operation timeout.
    case timedOut(operation: String)
    /// The connection broke (reset, closed, or an earlier failure left the session unusable).
    case disconnected(reason: String)
    /// A remote command exited with a status other than 0; `stderr` is its tail, a few KiB.
    case commandFailed(command: String, status: Int32, stderr: String)
    /// libssh2 failed in a way none of the above describes, or a limit of ours was exceeded.
    case library(String)

    public var description: String {
        switch self {
        case .connectFailed(let host, let port, let reason):
            "cannot connect to \(host) port \(port): \(reason)"
        case .hostKeyUnknown(let host, let port, let fingerprint, let file):
            "the host key of \(Self.name(host, port)) (\(fingerprint)) is not in \(file): connection refused; "
                + "check the fingerprint and add the key, or allow trust on first use"
        case .hostKeyChanged(let host, let port, let fingerprint, let file):
            "REFUSED: the host key of \(Self.name(host, port)) has CHANGED: the server presented \(fingerprint), "
                + "which does not match the key recorded in \(file). Someone may be intercepting the connection "
                + "(man-in-the-middle), or the host was reinstalled; nothing was sent to it. If the change is "
                + "expected, remove the old entry from \(file)."
        case .authenticationFailed(let user, let host, let reason):
            "authentication as \(user) on \(host) failed: \(reason)"
        case .timedOut(let operation):
            "SSH timed out: \(operation)"
        case .disconnected(let reason):
            "SSH connection lost: \(reason)"
        case .commandFailed(let command, let status, let stderr):
            "remote command `\(command)` exited with status \(status)" + (stderr.isEmpty ? "" : ": \(stderr)")
        case .library(let text):
            "libssh2: \(text)"
        }
    }

    static func name(_ host: String, _ port: Int) -> String { port == 22 ? host : "[\(host)]:\(port)" }
}
