import Foundation

/// Writes a disk image file on a hypervisor from streams of data runs, sparse: a raw partial
/// file is created at the disk's size as a hole, and only non-zero data crosses the network,
/// written with `dd` at its offset — by any number of range tasks, each marking its range
/// done. `complete` (once every range is) converts to qcow2 there if asked and gives the image
/// its final name: it never appears half written.
public final class RemoteImageWriter {
    public let host: String
    public let path: String
    public let format: String
    public let size: UInt64
    private let shell: any HostShell
    /// Named by the job: a partial file another (failed) restore left behind holds other
    /// bytes, and ranges write only non-zero chunks, so it must never be reused.
    private var partial: String { path + ".lifeboat-partial-\(job)" }
    /// The restore job writing the file.
    public let job: String
    /// Runs (offset, length) whose bytes are buffered for the next `dd` batch.
    private var runs: [(offset: UInt64, count: UInt64)] = []
    private var pending = Data()
    public private(set) var bytesTransferred: UInt64 = 0

    /// Runs per batch: one `sh -c` command line of `dd`s, kept well under SSH's packet size.
    static let runsPerBatch = 96
    /// Bytes buffered before a batch is sent.
    static let batchBytes = 64 << 20

    public init(shell: any HostShell, host: String, path: String, format: String, size: UInt64, job: String) throws {
        guard ["raw", "qcow2"].contains(format) else { throw LibvirtError.unsupportedDisk("cannot write \(format) images, only raw and qcow2") }
        self.shell = shell
        self.job = job
        self.host = host
        self.path = path
        self.format = format
        self.size = size
    }

    /// Makes the partial file (at the disk's size: `truncate` of a file already that size, by a
    /// concurrent range task, changes nothing).
    public func prepare() throws {
        try run(["mkdir", "-p", (path as NSString).deletingLastPathComponent, markers])
        try run(["truncate", "-s", "\(size)", partial])
    }

    /// Where range tasks record what they wrote: `<path>.lifeboat-ranges/<offset>`.
    private var markers: String { path + ".lifeboat-ranges-\(job)" }

    /// Records that the range at `offset` is written (after `flush`).
    public func markDone(offset: UInt64) throws {
        try run(["touch", "\(markers)/\(offset)"])
    }

    /// How many ranges are recorded as written.
    public func rangesDone() throws -> Int {
        let listing = try shell.run(Shell.command(["ls", markers]))
        return listing.status == 0 ? listing.output.split(separator: "\n").count : 0
    }

    /// Whether the image already has its final name (an earlier attempt completed it).
    public func isComplete() throws -> Bool {
        try shell.run(Shell.command(["test", "-e", path])).status == 0 && shell.run(Shell.command(["test", "-e", partial])).status != 0
    }

    /// Adds bytes at `offset` (ascending, not overlapping earlier writes).
    public func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws {
        if let last = runs.last, last.offset + last.count == offset {
            runs[runs.count - 1].count += UInt64(bytes.count)
        } else {
            if runs.count == Self.runsPerBatch { try flush() }
            runs.append((offset, UInt64(bytes.count)))
        }
        pending.append(contentsOf: bytes)
        if pending.count >= Self.batchBytes { try flush() }
    }

    /// Gives the file its final format and name, once every range is written; idempotent.
    public func complete() throws {
        if try isComplete() { return }
        if format == "qcow2" {
            let converting = path + ".lifeboat-converting-\(job)"
            try run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", partial, converting])
            try run(["mv", "-f", converting, path])
            try run(["rm", "-f", partial])
        } else {
            try run(["mv", "-f", partial, path])
        }
        try run(["rm", "-rf", markers])
    }

    /// Sends what is buffered: call it at the end of a range, before `markDone`.
    public func flush() throws {
        guard !runs.isEmpty else { return }
        let script = runs.map { run in
            Shell.command(["dd", "of=\(partial)", "bs=1M", "seek=\(run.offset)", "count=\(run.count)", "oflag=seek_bytes",
                           "iflag=count_bytes,fullblock", "conv=notrunc", "status=none"])
        }.joined(separator: " && ")
        let input = try shell.open(Shell.command(["sh", "-c", "set -e; " + script]))
        try pending.withUnsafeBytes { try input.write($0) }
        let result = try input.finish()
        guard result.status == 0 else {
            throw HostCommandFailed(host: host, command: "dd writes into \(partial)", status: result.status, stderr: result.stderr)
        }
        bytesTransferred += UInt64(pending.count)
        runs.removeAll(keepingCapacity: true)
        pending.removeAll(keepingCapacity: true)
    }

    private func run(_ arguments: [String]) throws {
        try shell.checked(Shell.command(arguments), host: host)
    }
}
