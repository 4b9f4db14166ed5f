import Foundation
import SSH

/// A hypervisor's shell over an SSH session: every command runs in an exec channel of it.
/// Belongs to the thread that owns the session.
public struct SSHShell: HostShell {
    public let session: SSHSession

    public init(session: SSHSession) { self.session = session }

    public func run(_ command: String, input: Data?) throws -> ShellResult {
        try session.run(command, input: input, outputLimit: 256 << 20)
    }

    public func stream(_ command: String, input: Data?, into body: (UnsafeRawBufferPointer) throws -> Void) throws -> ShellResult {
        try session.stream(command, input: input, into: body)
    }

    public func open(_ command: String) throws -> any ShellInput { SSHInput(channel: try session.open(command)) }
}

private struct SSHInput: ShellInput {
    let channel: SSHChannel

    func write(_ bytes: UnsafeRawBufferPointer) throws { try channel.write(bytes) }

    func finish() throws -> ShellResult { try channel.finish() }
}
