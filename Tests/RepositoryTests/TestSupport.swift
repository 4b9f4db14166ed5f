import Foundation
import XCTest
@testable import Repository

/// A scratch directory removed when the test ends.
final class ScratchDirectory {
    let path: String

    init() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-repo-test-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }
}

/// Deterministic pseudo-random bytes (SplitMix64), so a failing test reproduces.
struct SeededBytes {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { raw in
            var i = 0
            while i + 8 <= count {
                raw.storeBytes(of: next(), toByteOffset: i, as: UInt64.self)
                i += 8
            }
            while i < count {
                raw[i] = UInt8(truncatingIfNeeded: next())
                i += 1
            }
        }
        return out
    }
}

/// Compressible, non-repeating text.
func textBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    let words = ["lifeboat", "backup", "restore", "volume", "instance", "snapshot", "chunk", "index", "nova", "cinder"]
    var rng = SeededBytes(seed: seed)
    var out: [UInt8] = []
    out.reserveCapacity(count + 16)
    while out.count < count {
        out.append(contentsOf: words[Int(rng.next() % UInt64(words.count))].utf8)
        out.append(rng.next() % 11 == 0 ? 10 : 32)
    }
    return Array(out.prefix(count))
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func readFile(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// Sets the mtime of every object under `prefix` to `age` seconds ago, as if written then.
func age(_ repo: String, _ prefix: String, by age: TimeInterval) throws {
    let root = repo + "/" + prefix
    guard let walker = FileManager.default.enumerator(atPath: root) else { return }
    let date = Date().addingTimeInterval(-age)
    for case let relative as String in walker {
        let path = root + "/" + relative
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
            try FileManager.default.setAttributes([.modificationDate: date], ofItemAtPath: path)
        }
    }
}

/// Paths of every chunk object in a filesystem repository.
func chunkFiles(_ repo: String) throws -> [String] {
    try FileSystemBackend(root: repo).list(prefix: "chunks/").map { repo + "/" + $0.name }
}

/// Allocated bytes of a file: less than its size when it has holes.
func allocatedBytes(_ path: String) -> Int {
    var st = stat()
    precondition(stat(path, &st) == 0)
    return Int(st.st_blocks) * 512
}

extension XCTestCase {
    /// Backs up `bytes` as disk `disk` of `backup` through the file path, like a range task.
    @discardableResult
    func backUp(_ repo: Repository, _ bytes: [UInt8], backup: String, disk: String = "vda", parent: String? = nil,
                scratch: ScratchDirectory) throws -> BackupManifest {
        let image = scratch.file("image-\(backup)-\(disk)")
        try writeFile(image, bytes)
        defer { try? FileManager.default.removeItem(atPath: image) }
        return try repo.backupImage(path: image, backup: backup, disk: disk, parent: parent, threads: 3)
    }

    func restored(_ repo: Repository, backup: String, disk: String = "vda", scratch: ScratchDirectory) throws -> [UInt8] {
        let out = scratch.file("restored-\(backup)-\(disk)")
        defer { try? FileManager.default.removeItem(atPath: out) }
        try repo.restore(backup: backup, disk: disk, to: out)
        return try readFile(out)
    }
}
