import Foundation

/// A password, token or private key: the value is there for the wire, never for people.
///
/// Everything that prints a value (`description`, `debugDescription`, `dump`, string
/// interpolation, a log line, an error message) sees `<redacted>`, so a secret cannot leak by
/// being carried inside a type that is printed. Only `revealed` gives the value, and only the
/// code that puts it on the wire calls it.
public struct Secret: Sendable, Hashable, Codable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    private let value: String

    public init(_ value: String) { self.value = value }

    /// Reads a secret kept in a file (the way Lifeboat's configuration passes passwords): the
    /// whole file but its trailing line break, which editors and `echo` add.
    public init(contentsOfFile path: String) throws {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw OpenStackError.configuration("cannot read the secret file \(path): \(error.localizedDescription)")
        }
        var trimmed = Substring(text)
        while let last = trimmed.last, last == "\n" || last == "\r" { trimmed.removeLast() }
        guard !trimmed.isEmpty else { throw OpenStackError.configuration("the secret file \(path) is empty") }
        self.value = String(trimmed)
    }

    /// The value itself, for the request that sends it.
    public var revealed: String { value }
    public var isEmpty: Bool { value.isEmpty }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }

    public init(from decoder: any Decoder) throws {
        value = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}
