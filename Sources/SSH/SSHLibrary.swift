import CSSH2

/// libssh2's process-wide state, set up once before the first session.
///
/// `libssh2_init` is not thread-safe and must run before any session exists; a `static let`
/// is initialised exactly once, under Swift's own lock.
enum SSHLibrary {
    static let initialised: Bool = libssh2_init(0) == 0

    /// The libssh2 this process runs with, e.g. "1.10.0".
    static var version: String { libssh2_version(0).map { String(cString: $0) } ?? "unknown" }
}
