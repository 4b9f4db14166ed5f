import CSSH2
import Foundation

/// libssh2's process-wide state, set up once before the first session.
enum SSHLibrary {
    static let initialised: Bool = libssh2_init(0) == 0

    /// The libssh2 this process runs with, e.g. "1.10.0".
    static var version: String { libssh2_version(0).map { String(cString: $0) } ?? "unknown" }
}

public enum SSHError: Error, Sendable, Equatable, CustomStringConvertible {
    case library(String)

    public var description: String {
        switch self {
        case .library(let text): "libssh2: \(text)"
        }
    }
}

/// One libssh2 session: the C resource's owner, freed when this goes away.
///
/// Not `Sendable`: a libssh2 session is not thread-safe, so each session belongs to the one
/// thread that uses it. Connecting, host-key checks, authentication and channels grow here
/// with the libvirt strategy.
public final class SSHSession {
    let session: OpaquePointer

    public init() throws(SSHError) {
        guard SSHLibrary.initialised else { throw .library("libssh2_init failed") }
        guard let session = libssh2_session_init_ex(nil, nil, nil, nil) else { throw .library("cannot create a session") }
        self.session = session
    }

    deinit {
        libssh2_session_free(session)
    }

    /// Milliseconds a blocking call may take before it fails (0: forever).
    public var timeoutMilliseconds: Int {
        get { Int(libssh2_session_get_timeout(session)) }
        set { libssh2_session_set_timeout(session, newValue) }
    }

    public static var libraryVersion: String { SSHLibrary.version }
}
