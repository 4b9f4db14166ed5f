import CZstd

/// Errors reported by libzstd, with its own message so a damaged chunk names the reason.
public enum ZstdError: Error, Equatable, CustomStringConvertible {
    case compressionFailed(String)
    case decompressionFailed(String)
    /// The frame decoded to a different size than the caller expected (a truncated or altered frame).
    case sizeMismatch(expected: Int, actual: Int)

    public var description: String {
        switch self {
        case .compressionFailed(let m): "zstd compression failed: \(m)"
        case .decompressionFailed(let m): "zstd decompression failed: \(m)"
        case .sizeMismatch(let e, let a): "zstd frame decoded to \(a) bytes, expected \(e)"
        }
    }
}

/// A zstd compression context. Reusing one context per thread avoids re-allocating zstd's
/// work tables for every chunk, which matters at several hundred chunks per second.
/// Not thread-safe: give each worker thread its own.
public final class ZstdCompressor {
    private let context: OpaquePointer
    public let level: Int32

    public init(level: Int32) {
        guard let ctx = ZSTD_createCCtx() else { fatalError("ZSTD_createCCtx: out of memory") }
        context = ctx
        self.level = level
    }

    deinit { ZSTD_freeCCtx(context) }

    /// The largest output `compress` can produce for `size` input bytes.
    public static func bound(_ size: Int) -> Int { ZSTD_compressBound(size) }

    /// Compresses `source` into `destination`, which must hold at least `bound(source.count)` bytes.
    /// Returns the compressed length.
    public func compress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = ZSTD_compressCCtx(context, destination.baseAddress, destination.count,
                                  source.baseAddress, source.count, level)
        if ZSTD_isError(n) != 0 { throw ZstdError.compressionFailed(String(cString: ZSTD_getErrorName(n))) }
        return n
    }
}

/// A zstd decompression context; one per thread, like `ZstdCompressor`.
public final class ZstdDecompressor {
    private let context: OpaquePointer

    public init() {
        guard let ctx = ZSTD_createDCtx() else { fatalError("ZSTD_createDCtx: out of memory") }
        context = ctx
    }

    deinit { ZSTD_freeDCtx(context) }

    /// Decompresses one frame into `destination` and checks it fills exactly `expectedSize` bytes,
    /// so truncation or corruption is reported rather than returned as short data.
    public func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer,
                           expectedSize: Int) throws {
        let n = ZSTD_decompressDCtx(context, destination.baseAddress, destination.count,
                                    source.baseAddress, source.count)
        if ZSTD_isError(n) != 0 { throw ZstdError.decompressionFailed(String(cString: ZSTD_getErrorName(n))) }
        if n != expectedSize { throw ZstdError.sizeMismatch(expected: expectedSize, actual: n) }
    }
}
