/// A user name that may carry its domain the way vProtect and Windows write it:
/// `domain\username`. Keystone wants the two apart (the domain in the auth body's
/// `user.domain`), so Lifeboat accepts the operator's habit and splits it.
public struct QualifiedUserName: Sendable, Equatable {
    public var domain: String?
    public var name: String

    /// Splits at the first backslash; a name without one has no domain.
    public init(parsing text: String) {
        if let slash = text.firstIndex(of: "\\"), slash != text.startIndex {
            domain = String(text[..<slash])
            name = String(text[text.index(after: slash)...])
        } else {
            domain = nil
            name = text
        }
    }
}
