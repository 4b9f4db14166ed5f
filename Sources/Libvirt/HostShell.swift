import Foundation
import SSH

/// A way to run commands on a hypervisor: an SSH session in production (`SSHSession`). The
/// strategy only ever needs these three shapes, so it does not care how bytes get there.
public protocol HostShell {
    /// Runs `command` (a POSIX shell command line), writing `input` to its stdin, and collects
    /// its output.
    func run(_ command: String, input: Data?) throws -> ShellResult
    /// Runs `command` and hands its stdout to `body` as it arrives.
    func stream(_ command: String, input: Data?, into body: (UnsafeRawBufferPointer) throws -> Void) throws -> ShellResult
    /// Starts `command` to be fed a stream on its stdin.
    func open(_ command: String) throws -> any ShellInput
}

/// The stdin of a running command.
public protocol ShellInput {
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// Closes stdin and waits for the command to exit.
    func finish() throws -> ShellResult
}

/// What a command left: its exit status, stdout and the tail of its stderr (SSH's type, which
/// every shell uses).
public typealias ShellResult = SSHCommandResult

extension SSHCommandResult {
    public var output: String { String(decoding: stdout, as: UTF8.self) }
}

/// A command on a hypervisor that exited with a failure.
public struct HostCommandFailed: Error, CustomStringConvertible {
    public var host: String
    public var command: String
    public var status: Int32
    public var stderr: String

    public var description: String {
        let detail = stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        return "on \(host): `\(command)` exited with status \(status)" + (detail.isEmpty ? "" : ": \(detail.suffix(2000))")
    }
}

extension HostShell {
    public func run(_ command: String) throws -> ShellResult { try run(command, input: nil) }

    /// Runs `command` and throws `HostCommandFailed` (naming `host`) unless it exits with 0.
    @discardableResult
    public func checked(_ command: String, input: Data? = nil, host: String) throws -> ShellResult {
        let result = try run(command, input: input)
        guard result.status == 0 else { throw HostCommandFailed(host: host, command: command, status: result.status, stderr: result.stderr) }
        return result
    }
}

/// Quoting for the POSIX shell: every argument Lifeboat puts into a remote command line goes
/// through here, since paths and domain names come from domain XML and requests.
public enum Shell {
    public static func quote(_ argument: String) -> String {
        if !argument.isEmpty, argument.allSatisfy({ $0.isLetter || $0.isNumber || "/._-:=,@+".contains($0) }), argument.allSatisfy(\.isASCII) {
            return argument
        }
        return "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    public static func command(_ arguments: [String]) -> String {
        arguments.map(quote).joined(separator: " ")
    }
}
