import Foundation

/// How a remote command ended and what it printed.
public struct SSHCommandResult: Sendable {
    /// The exit status; a command killed by a signal reports 128 + the signal's number, as a
    /// shell does (-1 if the signal has no known number).
    public var status: Int32
    /// What it wrote to stdout (empty for `stream`, which hands stdout to its body).
    public var stdout: Data
    /// What it wrote to stderr: at most the last 64 KiB, as UTF-8 (invalid bytes replaced).
    public var stderr: String

    public init(status: Int32, stdout: Data, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }

    /// This result if the command succeeded (status 0), else `.commandFailed` with the end of
    /// its stderr.
    @discardableResult
    public func check(_ command: String) throws(SSHError) -> SSHCommandResult {
        guard status == 0 else {
            throw .commandFailed(command: command, status: status, stderr: Self.trimmed(stderr, to: 4096))
        }
        return self
    }

    /// The last `limit` bytes of `text` (whole characters), marked when something was cut.
    static func trimmed(_ text: String, to limit: Int) -> String {
        let text = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.utf8.count > limit else { return text }
        var tail = Substring(text)
        while tail.utf8.count > limit { tail = tail.dropFirst(max(1, (tail.utf8.count - limit) / 4)) }
        return "…" + tail
    }
}
