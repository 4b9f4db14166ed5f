import Foundation

/// A librados/librbd call that failed, with the negative errno it returned and what Lifeboat
/// was doing: "opening volumes/volume-1 failed: No such file or directory (-2)".
public struct CephError: Error, Sendable, Equatable, CustomStringConvertible {
    public var operation: String
    public var code: Int32

    public init(_ operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    /// The image, snapshot or pool named does not exist.
    public var isNotFound: Bool { code == -ENOENT }
    /// cephx refused the client: a wrong key or keyring, or a user without the capabilities.
    public var isPermissionDenied: Bool { code == -EACCES || code == -EPERM }
    /// The monitors or OSDs did not answer in time (the client's `*_timeout` options).
    public var isTimeout: Bool { code == -ETIMEDOUT }

    public var description: String {
        "\(operation) failed: \(String(cString: strerror(-code))) (\(code))"
    }
}

/// Turns a librados/librbd return value into a thrown `CephError` when negative.
@discardableResult
func check<T: BinaryInteger>(_ result: T, _ operation: @autoclosure () -> String) throws(CephError) -> T {
    guard result >= 0 else { throw CephError(operation(), code: Int32(truncatingIfNeeded: result)) }
    return result
}

/// The text in a NUL-terminated C buffer.
func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
