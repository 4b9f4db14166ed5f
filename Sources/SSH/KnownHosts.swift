import CSSH2
import Foundation

/// The server's host key as libssh2 saw it in the handshake.
struct HostKey {
    let raw: [UInt8]
    /// LIBSSH2_KNOWNHOST_KEY_*; 0 for a type known_hosts cannot hold.
    let knownHostType: Int32
    /// The algorithm name as known_hosts writes it, e.g. "ssh-ed25519".
    let typeName: String
    /// "SHA256:" and the unpadded base64 of the key's SHA-256, exactly as OpenSSH prints it.
    let fingerprint: String

    init?(session: OpaquePointer) {
        var length = 0
        var type: Int32 = 0
        guard let key = libssh2_session_hostkey(session, &length, &type), length > 0 else { return nil }
        raw = Array(UnsafeRawBufferPointer(start: key, count: length))
        (knownHostType, typeName) = switch type {
        case LIBSSH2_HOSTKEY_TYPE_RSA: (LIBSSH2_KNOWNHOST_KEY_SSHRSA, "ssh-rsa")
        case LIBSSH2_HOSTKEY_TYPE_DSS: (LIBSSH2_KNOWNHOST_KEY_SSHDSS, "ssh-dss")
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: (LIBSSH2_KNOWNHOST_KEY_ECDSA_256, "ecdsa-sha2-nistp256")
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: (LIBSSH2_KNOWNHOST_KEY_ECDSA_384, "ecdsa-sha2-nistp384")
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: (LIBSSH2_KNOWNHOST_KEY_ECDSA_521, "ecdsa-sha2-nistp521")
        case LIBSSH2_HOSTKEY_TYPE_ED25519: (LIBSSH2_KNOWNHOST_KEY_ED25519, "ssh-ed25519")
        default: (0, "unknown")
        }
        guard let hash = libssh2_hostkey_hash(session, LIBSSH2_HOSTKEY_HASH_SHA256) else { return nil }
        let digest = Data(bytes: hash, count: 32).base64EncodedString()
        fingerprint = "SHA256:" + digest.replacingOccurrences(of: "=", with: "")
    }
}

/// An OpenSSH known_hosts file, read through libssh2's knownhost API.
///
/// The file is read line by line here rather than with `libssh2_knownhost_readfile`, which
/// gives up at the first line it cannot parse (a key type it does not know, `@cert-authority`)
/// and would leave every later host unknown. Such lines are skipped: they cannot match a key
/// libssh2 can verify anyway.
final class KnownHosts {
    enum Verdict { case match, mismatch, unknown }

    /// The key types, in libssh2's host-key method names, that known_hosts can record and
    /// libssh2 1.10 can verify; OpenSSH's order of preference.
    static let methods: [(name: String, type: Int32)] = [
        ("ssh-ed25519", LIBSSH2_KNOWNHOST_KEY_ED25519),
        ("ecdsa-sha2-nistp256", LIBSSH2_KNOWNHOST_KEY_ECDSA_256),
        ("ecdsa-sha2-nistp384", LIBSSH2_KNOWNHOST_KEY_ECDSA_384),
        ("ecdsa-sha2-nistp521", LIBSSH2_KNOWNHOST_KEY_ECDSA_521),
        ("ssh-rsa", LIBSSH2_KNOWNHOST_KEY_SSHRSA),
    ]

    let path: String
    private let hosts: OpaquePointer

    init(session: OpaquePointer, path: String) throws(SSHError) {
        self.path = path
        guard let hosts = libssh2_knownhost_init(session) else { throw .library("cannot create a known-hosts collection") }
        self.hosts = hosts
        let contents: Data
        do {
            contents = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch let error as CocoaError where error.code == .fileReadNoSuchFile {
            return  // no file: nothing is known yet
        } catch {
            throw .library("cannot read the known_hosts file \(path): \(error.localizedDescription)")
        }
        for line in contents.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
            // As fgets would hand it over: with its newline, NUL-terminated. libssh2 1.10 cuts
            // the last character of a key that is not followed by one.
            let text = Array(line) + [UInt8(ascii: "\n"), 0]
            text.withUnsafeBytes { bytes in
                _ = libssh2_knownhost_readline(hosts, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count - 1, LIBSSH2_KNOWNHOST_FILE_OPENSSH)
            }
        }
    }

    deinit { libssh2_knownhost_free(hosts) }

    /// libssh2 checks `[host]:port` and then the plain name; port 22 is written plain only.
    private static func checkPort(_ port: Int) -> Int32 { port == 22 ? -1 : Int32(port) }

    /// How `key` compares with what the file records for `host`:`port`. A key of a type the
    /// file has no entry of for this host is `mismatch` when the host has other keys recorded:
    /// a server (or someone in between) offering an unrecorded type must not pass as new.
    func check(host: String, port: Int, key: HostKey) throws(SSHError) -> Verdict {
        guard key.knownHostType != 0 else { throw .library("the server's host key type is not supported") }
        let mask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | key.knownHostType
        let result = key.raw.withUnsafeBytes { raw in
            libssh2_knownhost_checkp(hosts, host, Self.checkPort(port), raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count, mask, nil)
        }
        switch result {
        case LIBSSH2_KNOWNHOST_CHECK_MATCH: return .match
        case LIBSSH2_KNOWNHOST_CHECK_MISMATCH: return .mismatch
        case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND: return hasEntry(host: host, port: port, type: 0) ? .mismatch : .unknown
        default: throw .library("cannot check the host key against \(path)")
        }
    }

    /// Whether the file has any key of `type` (0: of any type) for the host: a check with a key
    /// that cannot match reports `mismatch` exactly when such an entry exists.
    func hasEntry(host: String, port: Int, type: Int32) -> Bool {
        let impossible: [CChar] = [0]
        let mask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | type
        return libssh2_knownhost_checkp(hosts, host, Self.checkPort(port), impossible, 1, mask, nil) == LIBSSH2_KNOWNHOST_CHECK_MISMATCH
    }

    /// The host-key methods to offer, those known_hosts has for this host first: a server with
    /// RSA and ED25519 keys, known here by its RSA key only, must show that key, not look
    /// "changed" because libssh2 happened to prefer ed25519.
    func preferredMethods(host: String, port: Int) -> String {
        let known = Self.methods.filter { hasEntry(host: host, port: port, type: $0.type) }
        let others = Self.methods.filter { method in !known.contains { $0.name == method.name } }
        return (known + others).map(\.name).joined(separator: ",")
    }

    /// Appends `key` for the host, as OpenSSH would write it, unless a concurrent writer already
    /// recorded a key for it: under an exclusive flock, several worker processes meeting the
    /// same new host append one line between them, and a different key written meanwhile is
    /// reported (`mismatch`) instead of a second one being added.
    static func append(path: String, session: OpaquePointer, host: String, port: Int, key: HostKey) throws(SSHError) -> Verdict {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .library("cannot open \(path) to add a host key: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw .library("cannot lock \(path): \(String(cString: strerror(errno)))") }
        }
        // Under the lock: what the file says now.
        let verdict = try KnownHosts(session: session, path: path).check(host: host, port: port, key: key)
        guard verdict == .unknown else { return verdict }
        let name = port == 22 ? host : "[\(host)]:\(port)"
        var line = "\(name) \(key.typeName) \(Data(key.raw).base64EncodedString())\n"
        var size = stat()
        if fstat(fd, &size) == 0, size.st_size > 0, !endsWithNewline(path: path, size: Int64(size.st_size)) {
            line = "\n" + line
        }
        let written = line.utf8CString.withUnsafeBytes { bytes in write(fd, bytes.baseAddress, bytes.count - 1) }
        guard written == line.utf8.count else { throw .library("cannot append the host key to \(path): \(String(cString: strerror(errno)))") }
        return .unknown
    }

    private static func endsWithNewline(path: String, size: Int64) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return true }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: UInt64(size - 1))) != nil, let last = try? handle.read(upToCount: 1) else { return true }
        return last == Data("\n".utf8)
    }
}
