/// How to prove who we are to the server.
///
/// Its description (and debug description and mirror) never shows a password or passphrase:
/// endpoints end up in log lines and error reports.
public enum SSHAuthentication: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// A private key in a file, in OpenSSH's format (`ssh-keygen -t ed25519`) or PEM; the
    /// passphrase only if the key is encrypted.
    case publicKey(privateKeyFile: String, passphrase: String?)
    /// A password, sent as `password` authentication or, when the server offers only that, as
    /// the answer to `keyboard-interactive` prompts.
    case password(String)

    public var description: String {
        switch self {
        case .publicKey(let file, let passphrase): "public key \(file)\(passphrase == nil ? "" : " (with a passphrase)")"
        case .password: "password (hidden)"
        }
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror { Mirror(self, children: ["method": description]) }
}

/// Where to connect and how much to trust: everything `SSHSession` needs to reach a host.
public struct SSHEndpoint: Sendable {
    public var host: String
    public var port: Int
    public var user: String
    public var authentication: SSHAuthentication
    /// An OpenSSH known_hosts file (plain, hashed `|1|` and `[host]:port` entries). A missing
    /// file means no host is known.
    public var knownHostsFile: String
    /// Accept a host that known_hosts does not know and append its key there (the session
    /// reports it in `hostKeyAddedOnFirstUse` so the caller can log the fingerprint). A host
    /// whose key differs from a known one is refused regardless.
    public var trustOnFirstUse: Bool
    /// The TCP connection must be established within this time (each address tried shares it).
    public var connectTimeoutSeconds: Double
    /// The longest the session waits for the server: for each blocking libssh2 call (handshake,
    /// authentication, opening a channel) and, while a command runs, for anything at all to
    /// arrive from the server. The keepalives the session sends are answered by a living server,
    /// so a quiet command (one busy for minutes before it prints) survives when
    /// `keepaliveSeconds` is shorter than this, while a cut link fails after this time instead
    /// of hanging. libssh2's own calls (handshake, login, channel opening) wait at least 2 s.
    public var operationTimeoutSeconds: Double
    /// Seconds between keepalives (which ask for a reply) while the session waits for a command;
    /// 0 disables them. Keep it well below `operationTimeoutSeconds` (libssh2 turns 1 into 2).
    public var keepaliveSeconds: Int

    public init(
        host: String, port: Int = 22, user: String, authentication: SSHAuthentication,
        knownHostsFile: String, trustOnFirstUse: Bool = false,
        connectTimeoutSeconds: Double = 10, operationTimeoutSeconds: Double = 60, keepaliveSeconds: Int = 15
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.authentication = authentication
        self.knownHostsFile = knownHostsFile
        self.trustOnFirstUse = trustOnFirstUse
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.operationTimeoutSeconds = operationTimeoutSeconds
        self.keepaliveSeconds = keepaliveSeconds
    }

    /// The host as OpenSSH names it in known_hosts and messages: `host`, or `[host]:port`.
    var displayName: String { port == 22 ? host : "[\(host)]:\(port)" }
}
