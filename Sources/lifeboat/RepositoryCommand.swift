import ArgumentParser
import Foundation
import Events
import Repository

/// `lifeboat repo`: the operator's tools for a backup repository.
struct RepositoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repo", abstract: "Manage a backup repository: init, list, stats, verify, prune, gc, restore-to-file.",
        discussion: "The passphrase of an encrypted repository comes from LIFEBOAT_PASSPHRASE_FILE (or LIFEBOAT_PASSPHRASE).",
        subcommands: [Init.self, Backup.self, List.self, Stats.self, Verify.self, Prune.self, GC.self, RestoreToFile.self])

    struct Location: ParsableArguments {
        @Option(name: .customLong("repo"), help: "The repository's directory.") var path: String

        func open() throws -> Repository {
            try Repository.open(path: path, passphrase: try passphrase())
        }
    }

    static func passphrase() throws -> String? {
        let environment = ProcessInfo.processInfo.environment
        if let file = environment["LIFEBOAT_PASSPHRASE_FILE"] {
            return String(try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .newlines))
        }
        return environment["LIFEBOAT_PASSPHRASE"]
    }

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a repository.")
        @OptionGroup var location: Location
        @Option(help: "Chunk size in bytes (a power of two from 64 KiB to 64 MiB).") var chunkSize = RepositoryOptions.defaultChunkSize
        @Option(help: "zstd level.") var level: Int32 = 1
        @Flag(help: "Encrypt with the passphrase from LIFEBOAT_PASSPHRASE_FILE.") var encrypt = false

        func run() throws {
            var passphrase: String?
            if encrypt {
                guard let given = try RepositoryCommand.passphrase(), !given.isEmpty else {
                    throw ValidationError("--encrypt needs a passphrase in LIFEBOAT_PASSPHRASE_FILE")
                }
                passphrase = given
            }
            _ = try Repository.create(path: location.path,
                                      options: RepositoryOptions(chunkSize: chunkSize, compressionLevel: level, passphrase: passphrase))
            print("created \(location.path) (chunks of \(chunkSize) bytes, zstd level \(level)\(encrypt ? ", encrypted" : ""))")
        }
    }

    struct Backup: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Back up a raw image file or block device on this host directly (no broker), as one disk.",
            discussion: "Workers do the same through range tasks; this is for images at hand and for trying a repository out.")
        @OptionGroup var location: Location
        @Option(help: "The raw image or block device.") var image: String
        @Option(help: "The new backup's id.") var backup: String
        @Option(help: "The disk's name in the backup.") var disk = "vda"
        @Option(help: "Take unchanged chunks' ids from this backup (they are not read twice from the store).") var parent: String?

        func run() throws {
            let started = ContinuousClock.now
            let manifest = try location.open().backupImage(path: image, backup: backup, disk: disk, parent: parent)
            let elapsed = started.duration(to: .now).components
            let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
            let size = manifest.disks.reduce(UInt64(0)) { $0 + $1.size }
            print(String(format: "backup %@ of %@ committed: %@ in %.1f s (%@/s)", backup, image, ResultPrinter.bytes(size), seconds,
                         ResultPrinter.bytes(UInt64(Double(size) / max(seconds, 0.001)))))
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List backups with their sizes and what each stored anew.")
        @OptionGroup var location: Location

        func run() throws {
            let repository = try location.open()
            let usage = Dictionary(uniqueKeysWithValues: try repository.stats().backups.map { ($0.id, $0) })
            print("backup".padding(toLength: 28, withPad: " ", startingAt: 0), "created              ", "disks", "      logical", "     new stored", " parent")
            for manifest in try repository.listBackups() {
                let logical = manifest.disks.reduce(UInt64(0)) { $0 + $1.size }
                let new = usage[manifest.id].map { ResultPrinter.bytes(UInt64($0.newStoredBytes)) } ?? "-"
                print(manifest.id.padding(toLength: 28, withPad: " ", startingAt: 0),
                      Timestamp.format(manifest.createdAt).prefix(19), String(manifest.disks.count).leftPadded(5),
                      ResultPrinter.bytes(logical).leftPadded(13), new.leftPadded(15), manifest.parent ?? "-")
            }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Repository totals and deduplication.")
        @OptionGroup var location: Location

        func run() throws {
            let stats = try location.open().stats()
            print(stats)
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Re-read and re-hash chunks; name the damaged backups, disks and offsets.")
        @OptionGroup var location: Location
        @Option(help: "Check this fraction of the chunks, chosen at random (1 = all).") var sample = 1.0

        func run() throws {
            let report = try location.open().verify(sampleFraction: sample)
            for damaged in report.damaged { print("DAMAGED \(damaged)") }
            print(report.isHealthy ? "ok: \(report)" : "damaged: \(report)")
            if !report.isHealthy { throw ExitCode(1) }
        }
    }

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove backups no retention rule keeps (a backup is kept if any rule keeps it).")
        @OptionGroup var location: Location
        @Option var keepLast = 0
        @Option var keepDaily = 0
        @Option var keepWeekly = 0
        @Option var keepMonthly = 0
        @Option(help: "Keep everything younger than this many days.") var keepWithinDays: Double = 0
        @Flag(help: "Only say what would go.") var dryRun = false

        func run() throws {
            let policy = RetentionPolicy(keepLast: keepLast, keepDaily: keepDaily, keepWeekly: keepWeekly, keepMonthly: keepMonthly,
                                         keepWithin: keepWithinDays * 86_400)
            let decision = try location.open().prune(policy: policy, dryRun: dryRun)
            for (id, rules) in decision.keep.sorted(by: { $0.key < $1.key }) { print("keep    \(id)  (\(rules.joined(separator: ", ")))") }
            for id in decision.remove { print(dryRun ? "would remove \(id)" : "removed \(id)") }
        }
    }

    struct GC: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc", abstract: "Delete chunks no backup references (safe beside running backups: grace period).")
        @OptionGroup var location: Location
        @Option(help: "Only chunks unreferenced for this many hours go.") var graceHours: Double = 24
        @Flag var dryRun = false

        func run() throws {
            print(try location.open().collectGarbage(gracePeriod: graceHours * 3600, dryRun: dryRun))
        }
    }

    struct RestoreToFile: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "restore-to-file", abstract: "Write one disk of a backup to a file (sparse raw, or qcow2 through qemu-img).")
        @OptionGroup var location: Location
        @Option var backup: String
        @Option var disk: String
        @Option(help: "The output file.") var output: String
        @Option(help: "raw or qcow2.") var format = "raw"

        func run() throws {
            let repository = try location.open()
            switch format {
            case "raw": try repository.restore(backup: backup, disk: disk, to: output)
            case "qcow2": try repository.restoreQcow2(backup: backup, disk: disk, to: output)
            default: throw ValidationError("--format is raw or qcow2")
            }
            print("restored \(backup)/\(disk) to \(output)")
        }
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
