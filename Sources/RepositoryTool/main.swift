// repository-tool: a thin command over the Repository API, for the benchmark script and for
// tests that need a separate process (kill -9 mid-backup, concurrent writers). The `lifeboat`
// command is the operator's interface; this one only exists to exercise the library.
import Foundation
import Repository

let usage = """
    usage: repository-tool COMMAND REPO ...
      init REPO [--chunk-size BYTES] [--level N]
      backup REPO IMAGE BACKUP DISK [--parent ID] [--threads N] [--delay-ms MS]
      begin REPO BACKUP [--parent ID]
      range REPO IMAGE BACKUP DISK OFFSET LENGTH [--threads N]
      commit REPO BACKUP DISK:SIZE...
      restore REPO BACKUP DISK OUTPUT [--threads N]
      list REPO | stats REPO | verify REPO [--sample FRACTION] | gc REPO [--grace SECONDS]
    The passphrase of an encrypted repository comes from LIFEBOAT_PASSPHRASE.
    --delay-ms makes `backup` write one chunk at a time with a pause, so a test can kill it midway.
    """

struct Arguments {
    var positional: [String] = []
    var options: [String: String] = [:]

    init(_ raw: ArraySlice<String>) {
        var it = raw.makeIterator()
        while let a = it.next() {
            if a.hasPrefix("--") { options[String(a.dropFirst(2))] = it.next() ?? "" } else { positional.append(a) }
        }
    }

    func at(_ i: Int) -> String {
        guard i < positional.count else { fail(usage) }
        return positional[i]
    }

    func int(_ name: String, _ fallback: Int) -> Int { options[name].flatMap(Int.init) ?? fallback }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(2)
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// `backup --delay-ms`: one chunk at a time, pausing after each stored chunk. Each chunk is
/// durable and visible before the pause (no batching), so a test can watch them arrive.
func slowBackup(_ repo: Repository, image: String, backup: String, disk: String, parent: String?, delayMs: Int) throws {
    let data = try Data(contentsOf: URL(fileURLWithPath: image))
    try repo.beginBackup(backup, parent: parent)
    let writer = try repo.rangeWriter(backup: backup, disk: disk, offset: 0, length: UInt64(data.count), batchBytes: 0)
    var offset = 0
    while offset < data.count {
        let end = min(offset + repo.chunkSize, data.count)
        try data[offset..<end].withUnsafeBytes { try writer.write(at: UInt64(offset), $0) }
        usleep(UInt32(delayMs * 1000))
        offset = end
    }
    try writer.finish()
    try repo.commitBackup(backup, disks: [DiskLayout(name: disk, size: UInt64(data.count))])
}

func run() throws {
    let command = CommandLine.arguments.dropFirst().first ?? ""
    let args = Arguments(CommandLine.arguments.dropFirst(2))
    let passphrase = ProcessInfo.processInfo.environment["LIFEBOAT_PASSPHRASE"]
    if command == "init" {
        var options = RepositoryOptions(passphrase: passphrase)
        options.chunkSize = args.int("chunk-size", options.chunkSize)
        options.compressionLevel = Int32(args.int("level", Int(options.compressionLevel)))
        _ = try Repository.create(path: args.at(0), options: options)
        return
    }
    let repo = try Repository.open(path: args.at(0), passphrase: passphrase)
    let threads = args.int("threads", 0)
    switch command {
    case "backup":
        if let delay = args.options["delay-ms"].flatMap(Int.init) {
            try slowBackup(repo, image: args.at(1), backup: args.at(2), disk: args.at(3), parent: args.options["parent"], delayMs: delay)
        } else {
            try printJSON(try repo.backupImage(path: args.at(1), backup: args.at(2), disk: args.at(3),
                                               parent: args.options["parent"], threads: threads))
        }
    case "begin":
        try repo.beginBackup(args.at(1), parent: args.options["parent"])
    case "range":
        guard let offset = UInt64(args.at(4)), let length = UInt64(args.at(5)) else { fail(usage) }
        try repo.backupRange(of: args.at(1), backup: args.at(2), disk: args.at(3), offset: offset, length: length, threads: threads)
    case "commit":
        let disks = args.positional.dropFirst(2).map { spec -> DiskLayout in
            let parts = spec.split(separator: ":")
            guard parts.count == 2, let size = UInt64(parts[1]) else { fail(usage) }
            return DiskLayout(name: String(parts[0]), size: size)
        }
        try printJSON(try repo.commitBackup(args.at(1), disks: disks))
    case "restore":
        try repo.restore(backup: args.at(1), disk: args.at(2), to: args.at(3), threads: threads)
    case "list":
        try printJSON(try repo.listBackups())
    case "stats":
        print(try repo.stats())
    case "verify":
        let report = try repo.verify(sampleFraction: args.options["sample"].flatMap(Double.init) ?? 1, threads: threads)
        report.damaged.forEach { print($0) }
        print("checked \(report.checkedChunks) of \(report.referencedChunks) chunks in \(report.backupsChecked) backups")
        if !report.isHealthy { exit(1) }
    case "gc":
        print(try repo.collectGarbage(gracePeriod: args.options["grace"].flatMap(TimeInterval.init) ?? 24 * 3600))
    default:
        fail(usage)
    }
}

do {
    try run()
} catch {
    fail("repository-tool: \(error)")
}
