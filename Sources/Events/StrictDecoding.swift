import Foundation

/// A coding key for any field name: lets a decoder list every field an object holds.
struct AnyCodingKey: CodingKey {
    let stringValue: String
    let intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue; self.intValue = nil }
    init(intValue: Int) { self.stringValue = "\(intValue)"; self.intValue = intValue }
}

extension Decoder {
    /// Strictness against typos: a field this version does not define is an error, not
    /// something silently ignored (a misspelt `"mode": "full"` must not turn into an incremental).
    func rejectUnknownFields<Keys: CodingKey & CaseIterable>(_ keys: Keys.Type) throws {
        let known = Set(Keys.allCases.map(\.stringValue))
        let container = try container(keyedBy: AnyCodingKey.self)
        if let unknown = container.allKeys.map(\.stringValue).sorted().first(where: { !known.contains($0) }) {
            throw EventDecodingError.unknownField(path: EventDecodingError.jsonPath(codingPath + [AnyCodingKey(stringValue: unknown)]))
        }
    }

    func path(_ key: some CodingKey) -> String {
        EventDecodingError.jsonPath(codingPath + [key])
    }
}

/// Value rules shared by every message: they keep ids usable as AMQP routing-key words and
/// as file names, and keep strings bounded.
enum Validate {
    /// Ids end up in routing keys (`project.instance.job.status`), so no dots, spaces or wildcards.
    static func identifier(_ value: String, at path: String, maxLength: Int = 128, alsoAllowing extra: String = "") throws(EventDecodingError) {
        guard !value.isEmpty else { throw EventDecodingError.invalidValue(path: path, reason: "must not be empty") }
        guard value.utf8.count <= maxLength else {
            throw EventDecodingError.invalidValue(path: path, reason: "longer than \(maxLength) characters")
        }
        let allowed = value.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2D || byte == 0x5F || extra.utf8.contains(byte)
        }
        guard allowed else {
            let others = extra.map { ", \"\($0)\"" }.joined()
            throw EventDecodingError.invalidValue(path: path, reason: "only letters, digits, \"-\", \"_\"\(others) are allowed")
        }
    }

    /// Names, hosts, paths: any printable text of bounded length.
    static func text(_ value: String, at path: String, maxLength: Int = 1024) throws(EventDecodingError) {
        guard !value.isEmpty else { throw EventDecodingError.invalidValue(path: path, reason: "must not be empty") }
        guard value.utf8.count <= maxLength else {
            throw EventDecodingError.invalidValue(path: path, reason: "longer than \(maxLength) characters")
        }
        guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw EventDecodingError.invalidValue(path: path, reason: "contains control characters")
        }
    }

    static func absolutePath(_ value: String, at path: String) throws(EventDecodingError) {
        try text(value, at: path, maxLength: 4096)
        guard value.hasPrefix("/") else { throw EventDecodingError.invalidValue(path: path, reason: "must be an absolute path") }
        guard !value.split(separator: "/").contains("..") else {
            throw EventDecodingError.invalidValue(path: path, reason: "must not contain \"..\"")
        }
    }

    static func range<T: Comparable>(_ value: T, _ bounds: ClosedRange<T>, at path: String) throws(EventDecodingError) {
        guard bounds.contains(value) else {
            throw EventDecodingError.invalidValue(path: path, reason: "must be between \(bounds.lowerBound) and \(bounds.upperBound)")
        }
    }
}

extension KeyedDecodingContainer {
    func identifier(_ key: Key, maxLength: Int = 128, alsoAllowing extra: String = "") throws -> String {
        let value = try decode(String.self, forKey: key)
        try Validate.identifier(value, at: EventDecodingError.jsonPath(codingPath + [key]), maxLength: maxLength, alsoAllowing: extra)
        return value
    }

    func optionalIdentifier(_ key: Key) throws -> String? {
        guard let value = try decodeIfPresent(String.self, forKey: key) else { return nil }
        try Validate.identifier(value, at: EventDecodingError.jsonPath(codingPath + [key]))
        return value
    }

    func text(_ key: Key, maxLength: Int = 1024) throws -> String {
        let value = try decode(String.self, forKey: key)
        try Validate.text(value, at: EventDecodingError.jsonPath(codingPath + [key]), maxLength: maxLength)
        return value
    }

    func optionalText(_ key: Key, maxLength: Int = 1024) throws -> String? {
        guard let value = try decodeIfPresent(String.self, forKey: key) else { return nil }
        try Validate.text(value, at: EventDecodingError.jsonPath(codingPath + [key]), maxLength: maxLength)
        return value
    }

    func absolutePath(_ key: Key) throws -> String {
        let value = try decode(String.self, forKey: key)
        try Validate.absolutePath(value, at: EventDecodingError.jsonPath(codingPath + [key]))
        return value
    }

    /// Enums get a message that lists what is allowed instead of Foundation's "cannot initialize".
    func choice<T: RawRepresentable & CaseIterable>(_ type: T.Type, _ key: Key) throws -> T where T.RawValue == String {
        let raw = try decode(String.self, forKey: key)
        guard let value = T(rawValue: raw) else {
            let allowed = T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw EventDecodingError.invalidValue(
                path: EventDecodingError.jsonPath(codingPath + [key]), reason: "\"\(raw)\" is not one of \(allowed)")
        }
        return value
    }

    func optionalChoice<T: RawRepresentable & CaseIterable>(_ type: T.Type, _ key: Key) throws -> T? where T.RawValue == String {
        contains(key) && (try? decodeNil(forKey: key)) == false ? try choice(type, key) : nil
    }

    /// Maps of short strings (labels, metadata): bounded in count and size.
    func optionalLabels(_ key: Key, maxCount: Int = 64) throws -> [String: String]? {
        guard let labels = try decodeIfPresent([String: String].self, forKey: key) else { return nil }
        let path = EventDecodingError.jsonPath(codingPath + [key])
        guard labels.count <= maxCount else {
            throw EventDecodingError.invalidValue(path: path, reason: "more than \(maxCount) entries")
        }
        for (name, value) in labels {
            try Validate.text(name, at: path + "." + name, maxLength: 255)
            guard value.utf8.count <= 1024 else {
                throw EventDecodingError.invalidValue(path: path + "." + name, reason: "longer than 1024 characters")
            }
        }
        return labels
    }
}
