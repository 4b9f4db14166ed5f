import Foundation

/// A message Lifeboat owns: it says what it is (`type`) and which shape it has (`version`),
/// so a worker can refuse a message it does not understand instead of misreading it.
public protocol LifeboatMessage: Codable, Sendable {
    /// The `type` field's value, e.g. `backup.request`.
    static var messageType: String { get }
    /// The versions this build reads; it writes the highest.
    static var supportedVersions: ClosedRange<Int> { get }
}

/// Size limits: a bound on what one delivery may make a worker allocate.
public enum MessageLimits {
    /// Requests, task events and results are small; 1 MiB leaves room for large metadata.
    public static let maxMessageBytes = 1 << 20
    /// Nova's notifications carry whole instance records; 4 MiB is far above any seen.
    public static let maxNotificationBytes = 4 << 20
}

/// Reads and writes Lifeboat's JSON messages with the strictness the intake needs.
public enum MessageCodec {
    /// The fields every Lifeboat message starts with.
    public struct Header: Sendable, Equatable {
        public var type: String
        public var version: Int
    }

    public static func encode(_ message: some LifeboatMessage) -> Data {
        do {
            return try makeEncoder().encode(message)
        } catch {
            // Our own value types always encode; a failure here is a programming error.
            preconditionFailure("encoding \(type(of: message)) failed: \(error)")
        }
    }

    /// Reads `type` and `version` without trusting the rest, so that the error for an unknown
    /// version names the version rather than whichever field changed shape.
    public static func header(of body: Data, limit: Int = MessageLimits.maxMessageBytes) throws(EventDecodingError) -> Header {
        guard body.count <= limit else { throw .tooLarge(bytes: body.count, limit: limit) }
        let root: JSONValue
        do {
            root = try JSONDecoder().decode(JSONValue.self, from: body)
        } catch {
            throw .notJSON(detail: shortDescription(of: error))
        }
        guard case .object(let fields) = root else { throw .notAnObject(found: root.kindDescription) }
        guard let rawType = fields["type"] else { throw .missingType }
        guard case .string(let type) = rawType else { throw .wrongType(path: "type", expected: "a string") }
        guard let rawVersion = fields["version"] else { throw .missingField(path: "version") }
        guard case .int(let version) = rawVersion, let small = Int(exactly: version) else {
            throw .wrongType(path: "version", expected: "an integer")
        }
        return Header(type: type, version: small)
    }

    /// Decodes one message of a known type, checking its version first.
    public static func decode<M: LifeboatMessage>(_ type: M.Type, from body: Data, limit: Int = MessageLimits.maxMessageBytes) throws(EventDecodingError) -> M {
        let header = try header(of: body, limit: limit)
        guard header.type == M.messageType else { throw .unknownType(header.type) }
        guard M.supportedVersions.contains(header.version) else {
            throw .unsupportedVersion(type: header.type, version: header.version, supported: M.supportedVersions)
        }
        do {
            return try makeDecoder().decode(M.self, from: body)
        } catch {
            let decodingError = EventDecodingError.from(error)
            if case .notJSON = decodingError {
                // `header(of:)` parsed the body, so it is JSON: Foundation reports a number that
                // does not fit its field this way ("not valid JSON", with no path).
                throw .invalidValue(path: EventDecodingError.jsonPath([]), reason: MessageCodec.numberOutOfRange)
            }
            throw decodingError
        }
    }

    static let numberOutOfRange = "a number does not fit its field (negative, fractional or too large where a whole number is expected)"

    static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(Timestamp.format(date))
        }
        return encoder
    }

    static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = Timestamp.parse(text) else {
                throw EventDecodingError.invalidValue(
                    path: EventDecodingError.jsonPath(decoder.codingPath), reason: "\"\(text)\" is not an RFC 3339 time")
            }
            return date
        }
        return decoder
    }

    private static func shortDescription(of error: any Error) -> String {
        var text = "\(error)"
        if case DecodingError.dataCorrupted(let context) = error {
            text = context.underlyingError.map { "\($0)" } ?? context.debugDescription
        }
        return text.count > 200 ? String(text.prefix(200)) + "…" : text
    }
}

/// RFC 3339 times in UTC with milliseconds: what monitors in any language parse.
public enum Timestamp {
    public static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    public static func parse(_ text: String) -> Date? {
        // Foundation's parser alone also takes "…Z junk", "2025-1-2T3:4:5Z" and "…GMT".
        guard hasRFC3339Shape(text) else { return nil }
        if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) { return date }
        return try? Date.ISO8601FormatStyle().parse(text)
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, nothing before or after; the ranges of the
    /// fields are left to the parser.
    static func hasRFC3339Shape(_ text: String) -> Bool {
        let b = Array(text.utf8)
        func digits(_ range: Range<Int>) -> Bool { range.allSatisfy { $0 < b.count && b[$0] >= 0x30 && b[$0] <= 0x39 } }
        func byte(_ i: Int, _ c: Character) -> Bool { i < b.count && b[i] == c.asciiValue! }
        guard digits(0..<4), byte(4, "-"), digits(5..<7), byte(7, "-"), digits(8..<10), byte(10, "T"),
              digits(11..<13), byte(13, ":"), digits(14..<16), byte(16, ":"), digits(17..<19) else { return false }
        var i = 19
        if byte(i, ".") {
            i += 1
            let start = i
            while digits(i..<(i + 1)) { i += 1 }
            guard i > start else { return false }
        }
        if byte(i, "Z") { return i + 1 == b.count }
        guard byte(i, "+") || byte(i, "-") else { return false }
        return digits((i + 1)..<(i + 3)) && byte(i + 3, ":") && digits((i + 4)..<(i + 6)) && i + 6 == b.count
    }
}
