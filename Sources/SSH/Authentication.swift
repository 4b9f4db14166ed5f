import CSSH2
import Foundation

/// User authentication on a session whose host key has been accepted.
enum Authentication {
    static func authenticate(session: OpaquePointer, endpoint: SSHEndpoint) throws(SSHError) {
        let user = endpoint.user
        let userLength = UInt32(user.utf8.count)
        guard let list = libssh2_userauth_list(session, user, userLength) else {
            if libssh2_userauth_authenticated(session) != 0 { return }  // the server accepted "none"
            throw SSHSession.error(session, code: libssh2_session_last_errno(session), doing: "asking \(endpoint.displayName) for its authentication methods")
        }
        let offered = String(cString: list)
        let methods = Set(offered.split(separator: ",").map(String.init))
        func refused(_ reason: String) -> SSHError {
            .authenticationFailed(user: user, host: endpoint.displayName, reason: "\(reason); the server offers: \(offered)")
        }
        /// A timeout or a broken connection is not a refusal.
        func failure(_ code: Int32, _ reason: String) -> SSHError {
            switch code {
            case LIBSSH2_ERROR_TIMEOUT, LIBSSH2_ERROR_SOCKET_SEND, LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_DISCONNECT:
                SSHSession.error(session, code: code, doing: "authenticating as \(user) on \(endpoint.displayName)")
            default:
                refused("\(reason): \(SSHSession.lastErrorMessage(session))")
            }
        }

        switch endpoint.authentication {
        case .publicKey(let file, let passphrase):
            guard methods.contains("publickey") else { throw refused("public key authentication is not offered") }
            guard access(file, R_OK) == 0 else { throw refused("cannot read the private key \(file): \(String(cString: strerror(errno)))") }
            // libssh2 derives the public key from the private one (OpenSSH-format and PEM keys);
            // the `.pub` beside it is the fallback for a key it cannot derive from.
            var code = libssh2_userauth_publickey_fromfile_ex(session, user, userLength, nil, file, passphrase)
            if code == LIBSSH2_ERROR_FILE, access(file + ".pub", R_OK) == 0 {
                code = libssh2_userauth_publickey_fromfile_ex(session, user, userLength, file + ".pub", file, passphrase)
            }
            guard code == 0 else { throw failure(code, "the key \(file) was not accepted") }

        case .password(let password):
            let code: Int32
            if methods.contains("password") {
                code = libssh2_userauth_password_ex(session, user, userLength, password, UInt32(password.utf8.count), nil)
            } else if methods.contains("keyboard-interactive") {
                code = keyboardInteractive(session: session, user: user, password: password)
            } else {
                throw refused("password authentication is not offered")
            }
            guard code == 0 else { throw failure(code, "the password was not accepted") }
        }
    }

    /// keyboard-interactive, answering every prompt with the password: what a server that asks
    /// "Password:" through PAM offers instead of `password`. libssh2's callback gets the answer
    /// through the session's abstract pointer, set only for this call.
    private static func keyboardInteractive(session: OpaquePointer, user: String, password: String) -> Int32 {
        guard let secret = strdup(password) else { return LIBSSH2_ERROR_ALLOC }
        let abstract = libssh2_session_abstract(session)
        abstract?.pointee = UnsafeMutableRawPointer(secret)
        defer {
            abstract?.pointee = nil
            memset(secret, 0, strlen(secret))
            free(secret)
        }
        return libssh2_userauth_keyboard_interactive_ex(session, user, UInt32(user.utf8.count)) { _, _, _, _, count, _, responses, abstract in
            guard let responses, let secret = abstract?.pointee?.assumingMemoryBound(to: CChar.self) else { return }
            for index in 0..<Int(max(0, count)) {
                // libssh2 frees each answer with the session's allocator: plain free().
                responses[index].text = strdup(secret)
                responses[index].length = UInt32(strlen(secret))
            }
        }
    }
}
