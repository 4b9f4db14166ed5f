import Foundation

/// An image file's backing chain, as `qemu-img info --backing-chain --output=json` reports it.
public struct ImageChain: Sendable, Codable, Equatable {
    public struct Layer: Sendable, Codable, Equatable {
        public var path: String
        public var format: String
    }

    /// The image first, then its backing files, nearest first: `ImageMap.Extent.depth` indexes this.
    public var layers: [Layer]
    /// The guest-visible size.
    public var virtualSize: UInt64

    public init(layers: [Layer], virtualSize: UInt64) {
        self.layers = layers
        self.virtualSize = virtualSize
    }

    public init(qemuImgInfo json: Data) throws {
        struct Entry: Decodable {
            var filename: String
            var format: String
            var virtualSize: UInt64
            enum CodingKeys: String, CodingKey { case filename, format, virtualSize = "virtual-size" }
        }
        let entries: [Entry]
        do {
            entries = try JSONDecoder().decode([Entry].self, from: json)
        } catch {
            throw LibvirtError.unreadableImageInfo("qemu-img info: \(error)")
        }
        guard let top = entries.first else { throw LibvirtError.unreadableImageInfo("qemu-img info listed no image") }
        layers = entries.map { Layer(path: $0.filename, format: $0.format) }
        virtualSize = top.virtualSize
    }

    public static func infoCommand(_ path: String) -> String {
        Shell.command(["qemu-img", "info", "--backing-chain", "-U", "--output=json", path])
    }
}

/// Where a guest-visible range of an image lives, from `qemu-img map --output=json`.
public struct ImageMap: Sendable {
    public struct Extent: Sendable, Equatable {
        public var start: UInt64
        public var length: UInt64
        /// The chain layer that holds it (0: the image itself).
        public var depth: Int
        /// Allocated in some layer (false: reads as zeros from nowhere).
        public var present: Bool
        /// Reads as zeros.
        public var zero: Bool
        public var data: Bool
        /// Byte offset inside layer `depth`'s file, when the data lies there uncompressed.
        public var offset: UInt64?

        public var range: Range<UInt64> { start..<start + length }
    }

    public var extents: [Extent]

    public init(extents: [Extent]) { self.extents = extents }

    public init(qemuImgMap json: Data) throws {
        struct Entry: Decodable {
            var start: UInt64
            var length: UInt64
            var depth: Int
            var present: Bool?
            var zero: Bool
            var data: Bool
            var offset: UInt64?
        }
        do {
            extents = try JSONDecoder().decode([Entry].self, from: json).map {
                Extent(start: $0.start, length: $0.length, depth: $0.depth, present: $0.present ?? ($0.data || $0.zero),
                       zero: $0.zero, data: $0.data, offset: $0.offset)
            }
        } catch {
            throw LibvirtError.unreadableImageInfo("qemu-img map: \(error)")
        }
    }

    /// The map of `[offset, offset + length)` of `path`. `-U`: the image is in use by QEMU
    /// (read-only, as a frozen backing file), so its lock is shared, not taken.
    public static func command(_ path: String, offset: UInt64, length: UInt64) -> String {
        Shell.command(["qemu-img", "map", "--output=json", "-U", "--start-offset=\(offset)", "--max-length=\(length)", path])
    }

    /// Extents that hold data (everything else reads as zeros): what a full backup reads.
    public var dataExtents: [Extent] { extents.filter { $0.data && !$0.zero } }

    /// Extents the image's own top layer holds (data or zeros written since it was created):
    /// what changed since the overlay was made, for an incremental.
    public var topLayerExtents: [Extent] { extents.filter { $0.depth == 0 && $0.present } }
}
