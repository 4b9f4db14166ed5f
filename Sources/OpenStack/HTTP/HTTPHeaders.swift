/// Header fields in order, looked up without regard to case. Printing them (description,
/// debugDescription, dump) shows credentials such as `X-Auth-Token` as `<redacted>`.
public struct HTTPHeaders: Sendable, Equatable, ExpressibleByDictionaryLiteral, Sequence,
    CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public private(set) var fields: [(name: String, value: String)] = []

    public init() {}

    public init(dictionaryLiteral elements: (String, String)...) {
        for (name, value) in elements { add(name, value) }
    }

    /// The last value of `name`, case-insensitively (the one that counts when a server repeats one).
    public subscript(name: String) -> String? {
        get { fields.last { $0.name.lowercased() == name.lowercased() }?.value }
        set {
            fields.removeAll { $0.name.lowercased() == name.lowercased() }
            if let newValue { fields.append((name, newValue)) }
        }
    }

    public mutating func add(_ name: String, _ value: String) { fields.append((name, value)) }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.count == rhs.fields.count && zip(lhs.fields, rhs.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    /// The fields as they may be shown: credentials replaced.
    public var redacted: [(name: String, value: String)] {
        fields.map { ($0.name, Redaction.headerValue(name: $0.name, value: $0.value)) }
    }

    public var description: String { redacted.map { "\($0.name): \($0.value)" }.joined(separator: ", ") }
    public var debugDescription: String { "HTTPHeaders(\(description))" }
    public var customMirror: Mirror {
        Mirror(self, children: redacted.map { (label: $0.name as String?, value: $0.value as Any) }, displayStyle: .dictionary)
    }
}
