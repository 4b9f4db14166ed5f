import Foundation
import Repository

/// The guest-visible content of a frozen image file on a hypervisor, read over a `HostShell`.
///
/// Nothing is installed on the hypervisor: `qemu-img map` says, for each guest range, which
/// layer of the backing chain holds it and at which offset of that file (or that it reads as
/// zeros), and `dd` reads exactly those bytes from the layer files. So a qcow2 chain is read
/// as the guest sees it, holes and zero clusters never cross the network, and an incremental
/// reads only the clusters the kept overlay itself holds.
public final class RemoteImageSource: StreamingBlockSource {
    public enum Selection: Sendable {
        /// Every extent that holds data: a full backup.
        case allData
        /// Only what the top layer (an overlay Lifeboat made at the previous backup) holds.
        case topLayer
    }

    public let host: String
    public let chain: ImageChain
    public let selection: Selection
    private let shell: any HostShell
    private var map: [ImageMap.Extent] = []
    /// Bytes read from the hypervisor's files (zeros are never sent).
    public private(set) var bytesTransferred: UInt64 = 0

    /// When set, the bytes come over a plain TCP connection to this address of the worker
    /// (`DataListener`: trusted networks only), while SSH carries the command.
    public let fastPathAddress: String?

    public init(shell: any HostShell, host: String, chain: ImageChain, selection: Selection, fastPathAddress: String? = nil) {
        self.shell = shell
        self.host = host
        self.chain = chain
        self.selection = selection
        self.fastPathAddress = fastPathAddress
    }

    public var size: UInt64 { chain.virtualSize }

    public func extents(offset: UInt64, length: UInt64) throws -> [Range<UInt64>] {
        let fetched = try ImageMap(qemuImgMap: shell.checked(ImageMap.command(chain.layers[0].path, offset: offset, length: length), host: host).stdout)
        map = fetched.extents
        return (selection == .allData ? fetched.dataExtents : fetched.topLayerExtents).map(\.range)
    }

    /// What to deliver for a piece, in order: zeros made here, or bytes of a layer file.
    enum Part: Equatable {
        case zeros(at: UInt64, count: UInt64)
        case file(at: UInt64, count: UInt64, layer: Int, fileOffset: UInt64)
    }

    /// The parts that make up `pieces`, from the map that `extents` fetched.
    func parts(of pieces: [Range<UInt64>]) throws -> [Part] {
        var parts: [Part] = []
        var cursor = 0
        for piece in pieces {
            var at = piece.lowerBound
            while at < piece.upperBound {
                while cursor < map.count, map[cursor].range.upperBound <= at { cursor += 1 }
                guard cursor < map.count, map[cursor].range.contains(at) else {
                    throw LibvirtError.unreadableImageInfo("qemu-img map of \(chain.layers[0].path) does not cover offset \(at)")
                }
                let extent = map[cursor]
                let count = min(piece.upperBound, extent.range.upperBound) - at
                if extent.zero || !extent.data {
                    parts.append(.zeros(at: at, count: count))
                } else {
                    guard let offset = extent.offset, extent.depth < chain.layers.count else {
                        throw LibvirtError.unsupportedDisk("\(chain.layers[min(extent.depth, chain.layers.count - 1)].path): data at guest offset "
                                                           + "\(extent.start) is compressed or encrypted, which this reader cannot copy as is")
                    }
                    parts.append(.file(at: at, count: count, layer: extent.depth, fileOffset: offset + (at - extent.start)))
                }
                at += count
            }
        }
        return parts
    }

    /// A shell script that writes the file parts' bytes, in order, to stdout. Parts that continue
    /// each other in the same file are read by one `dd`.
    func readScript(_ parts: [Part]) -> String {
        var reads: [(layer: Int, offset: UInt64, count: UInt64)] = []
        for case let .file(_, count, layer, fileOffset) in parts {
            if let last = reads.last, last.layer == layer, last.offset + last.count == fileOffset {
                reads[reads.count - 1].count += count
            } else {
                reads.append((layer, fileOffset, count))
            }
        }
        return "set -e\n" + reads.map { read in
            Shell.command(["dd", "if=\(chain.layers[read.layer].path)", "bs=1M", "skip=\(read.offset)", "count=\(read.count)",
                           "iflag=skip_bytes,count_bytes", "status=none"])
        }.joined(separator: "\n") + "\n"
    }

    public func stream(_ pieces: [Range<UInt64>], into deliver: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws {
        let parts = try parts(of: pieces)
        var next = 0
        var consumed: UInt64 = 0 // of parts[next], when it is a file part
        func deliverZeros() throws {
            while next < parts.count, case .zeros(let at, let count) = parts[next] {
                var done: UInt64 = 0
                while done < count {
                    let n = Int(min(count - done, UInt64(Self.zeros.count)))
                    try deliver(at + done, UnsafeRawBufferPointer(rebasing: Self.zeros[0..<n]))
                    done += UInt64(n)
                }
                next += 1
            }
        }
        try deliverZeros()
        if parts.contains(where: { if case .file = $0 { true } else { false } }) {
            func consume(_ block: UnsafeRawBufferPointer) throws {
                var block = block
                while !block.isEmpty {
                    try deliverZeros()
                    guard next < parts.count, case .file(let at, let count, _, _) = parts[next] else {
                        throw LibvirtError.unreadableImageInfo("\(host) sent more bytes than were asked for")
                    }
                    let n = Int(min(UInt64(block.count), count - consumed))
                    try deliver(at + consumed, UnsafeRawBufferPointer(rebasing: block[0..<n]))
                    bytesTransferred += UInt64(n)
                    consumed += UInt64(n)
                    block = UnsafeRawBufferPointer(rebasing: block[n...])
                    if consumed == count {
                        next += 1
                        consumed = 0
                    }
                }
            }
            let script = Data(readScript(parts).utf8)
            let result: ShellResult
            if let fastPathAddress {
                result = try streamOverTCP(script, address: fastPathAddress, into: consume)
            } else {
                result = try shell.stream("sh -s", input: script, into: consume)
            }
            guard result.status == 0 else {
                throw HostCommandFailed(host: host, command: "dd reads of \(chain.layers[0].path)", status: result.status, stderr: result.stderr)
            }
            try deliverZeros()
        }
        guard next == parts.count else {
            throw LibvirtError.unreadableImageInfo("\(host) ended the stream of \(chain.layers[0].path) early (file shrank or was removed?)")
        }
    }

    /// Runs the read script with its output sent over a `DataListener` connection: the SSH
    /// command runs on a thread of its own (it ends when the script does) while this thread
    /// receives. The session is used by that thread alone until it is joined.
    private func streamOverTCP(_ script: Data, address: String, into consume: (UnsafeRawBufferPointer) throws -> Void) throws -> ShellResult {
        let listener = try DataListener(address: address)
        nonisolated(unsafe) let shell = self.shell
        nonisolated(unsafe) var outcome: Result<ShellResult, any Error> = .failure(LibvirtError.unreadableImageInfo("not run"))
        let command = listener.senderCommand
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            outcome = Result { try shell.run(command, input: script) }
            done.signal()
        }
        let received = Result { try listener.receive(timeoutSeconds: 30, into: consume) }
        done.wait()
        let result = try outcome.get()
        if case .failure(let error) = received, result.status == 0 { throw error }
        return result
    }

    nonisolated(unsafe) private static let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096).initialized()
}

private extension UnsafeMutableRawBufferPointer {
    func initialized() -> UnsafeRawBufferPointer {
        initializeMemory(as: UInt8.self, repeating: 0)
        return UnsafeRawBufferPointer(self)
    }
}
