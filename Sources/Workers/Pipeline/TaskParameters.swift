import Events
import Foundation
import Libvirt
import Repository

/// What a task needs beyond its kind, disk and range, carried in `TaskEvent.parameters` so that
/// any worker can run it without looking anything up.
struct BackupPlan: Codable, Sendable, Equatable {
    struct Disk: Codable, Sendable, Equatable {
        var name: String
        /// The image to read: a local file, or on a hypervisor the frozen top of the chain.
        var path: String
        var size: UInt64
        /// On a hypervisor: the frozen image's backing chain (layer files, as `qemu-img` names them).
        var chain: ImageChain? = nil
        /// True: read only the top layer (the overlay kept since the parent backup).
        var changesOnly: Bool? = nil
        /// When set, only these ranges (by offset) are transferred: in an incremental the rest
        /// did not change since the parent backup, whose chunks the commit inherits there; in a
        /// full the rest is `zeroRanges`.
        var changedRanges: [UInt64]? = nil
        /// A full of a sparse image: the runs that hold no allocated data, committed as zero
        /// chunks without a task reading them (a 1 TiB volume with little data costs a few
        /// tasks, not thousands).
        var zeroRanges: [ByteRange]? = nil

        /// What the commit needs of the disk.
        var layout: DiskLayout {
            DiskLayout(name: name, size: size, zeroRanges: (zeroRanges ?? []).map { $0.offset..<($0.offset + $0.length) })
        }
    }

    var backupId: String
    var parent: String?
    var disks: [Disk]
    /// Number of transfer ranges over all disks: the backup is complete when all are staged.
    var rangeCount: Int
    var totalBytes: UInt64
    /// Seconds since 1970 when the job was planned: progress rates count from here.
    var plannedAt: Double
    /// Set when the disks are files on a hypervisor (the libvirt strategy).
    var libvirt: LibvirtSource? = nil
    /// Set when the disks are RBD images (the Ceph strategy).
    var rbd: RBDSource? = nil
    /// The Nova server and what surrounds it, when the instance is one (saved with the backup).
    var openstack: InstanceRecord? = nil
    /// Set when the disks are Cinder volumes read by disk attachment.
    var attachment: AttachmentSource? = nil
}

extension BackupPlan {
    /// Bytes per range task: `rangeBytes` in whole chunks, at least one chunk.
    static func step(_ rangeBytes: UInt64, chunkSize: Int) -> UInt64 {
        let chunk = UInt64(chunkSize)
        return max(chunk, rangeBytes / chunk * chunk)
    }

    static func ranges(_ disks: [Disk], step: UInt64) -> [(disk: String, range: ByteRange)] {
        disks.flatMap { disk in
            (disk.changedRanges ?? Array(stride(from: UInt64(0), to: disk.size, by: Int(step))))
                .map { (disk.name, ByteRange(offset: $0, length: min(step, disk.size - $0))) }
        }
    }

    /// One `transfer` task per range of each disk (ids named by disk and offset, so a replayed
    /// plan names the same tasks), or straight to `finalize` when there is nothing to read.
    func transferTasks(_ job: JobReference, step: UInt64) -> [TaskEvent] {
        let parameters = TaskEvent.parameters(self)
        let ranges = Self.ranges(disks, step: step)
        guard !ranges.isEmpty else { return [TaskEvent(taskId: "\(job.jobId).finalize", job: job, kind: .finalize, parameters: parameters)] }
        return ranges.map { disk, range in
            TaskEvent(taskId: "\(job.jobId).transfer.\(disk).\(range.offset)", job: job, kind: .transfer, disk: disk, range: range,
                      parameters: parameters)
        }
    }
}

/// What a libvirt backup saved about its source: enough to find the overlays again, to tell
/// which machine the data came from, and to define the domain again at restore.
struct LibvirtSource: Codable, Sendable, Equatable {
    var hypervisor: String
    var domain: String
    /// The hypervisor's host name and verified SSH host key.
    var hostname: String
    var hostKeyFingerprint: String?
    /// `virsh dumpxml --inactive` after the snapshot.
    var definition: String
    /// Per disk: the file the domain used before Lifeboat's overlays, and its format.
    var diskFiles: [String: String]
    var diskFormats: [String: String]
    /// Per disk: the overlay this backup's snapshot created (empty when the domain was shut
    /// off and no snapshot was needed).
    var overlays: [String: String]
    /// `quiesced` (guest agent froze the file systems) or `crash-consistent`.
    var consistency: String
    /// Bitmap mode: per disk the scratch copy QEMU's push backup wrote, and the checkpoint
    /// (dirty bitmap) this backup created, which the next incremental starts from.
    var pushTargets: [String: String]? = nil
    var checkpoint: String? = nil
}

/// The snapshot task's order: what the planner knows before the hypervisor is touched.
struct LibvirtSnapshotOrder: Codable, Sendable, Equatable {
    var backupId: String
    var hypervisor: String
    var domain: String
    var disks: [String]?
    var mode: BackupMode
    var plannedAt: Double
    /// Whose backups an incremental of the domain's RBD disks continues.
    var instance: String? = nil
    /// Disks that are Cinder volumes read by disk attachment (left out of the domain's
    /// snapshot), and the proxy server their copies are attached to.
    var attachedVolumes: [AttachedVolume]? = nil
    var proxyServer: String? = nil
}

/// Undo a backup's snapshot after the job failed or was cancelled: merge the overlay named
/// after it back, wherever it still is active.
struct LibvirtRollbackOrder: Codable, Sendable, Equatable {
    var backupId: String
    var hypervisor: String
    var domain: String
    /// The overlay files, when known: removed if the domain is gone.
    var overlays: [String]
    /// The domain's RBD disks ("pool/image"), when known: their snapshot of this backup goes too.
    var rbdImages: [String]? = nil
    /// The volume copies of disks read by disk attachment: detached and deleted too.
    var attachment: AttachmentRelease? = nil
}

/// What an RBD backup saved about its source: the cluster, and per disk the image and the
/// snapshot this backup took (kept until the next backup, whose incremental starts from it).
struct RBDSource: Codable, Sendable, Equatable {
    struct Image: Codable, Sendable, Equatable {
        var pool: String
        var image: String
        /// `lifeboat-<backup>`: this backup's snapshot.
        var snapshot: String
        /// The parent backup's snapshot the changes are read since; nil for a full.
        var since: String? = nil
    }

    var cluster: String
    var fsid: String
    var images: [String: Image]

    static func snapshotName(_ backup: String) -> String { "lifeboat-\(backup)" }

    /// The backup a snapshot was taken for, if it is one of Lifeboat's.
    static func snapshotBackup(_ snapshot: String) -> String? {
        guard snapshot.hasPrefix("lifeboat-") else { return nil }
        let backup = String(snapshot.dropFirst("lifeboat-".count))
        return backup.isEmpty ? nil : backup
    }
}

/// The RBD snapshot task's order: what the planner knows before the cluster is touched.
struct RBDSnapshotOrder: Codable, Sendable, Equatable {
    var backupId: String
    var cluster: String
    var disks: [RBDDisk]
    var mode: BackupMode
    var plannedAt: Double
}

/// Undo a failed or cancelled RBD backup: remove the snapshots it took.
struct RBDRollbackOrder: Codable, Sendable, Equatable {
    var backupId: String
    var cluster: String
    /// "pool/image" of every disk.
    var images: [String]
}

/// A restore into RBD images: per disk the image to create (or, on request, overwrite).
struct RBDRestoreTarget: Codable, Sendable, Equatable {
    var cluster: String
    var pool: String
    var images: [String: String]
    var overwrite: Bool
    /// The images belong to someone else (a Cinder volume): a missing one is an error, never
    /// created (the volume was deleted while the restore ran).
    var existingOnly: Bool? = nil
}

/// A restore as a new Nova server in `project`: the planner's choices, and the provision
/// task's volumes.
struct InstanceRestoreTarget: Codable, Sendable, Equatable {
    /// The target project's id.
    var project: String
    var name: String
    /// The flavor's id, checked when the job was planned.
    var flavorID: String
    /// Networks (ids or names) the request named; nil: the saved ones, those that exist.
    var networks: [String]?
    /// The key pair the request named; nil: the saved one (recreated where missing).
    var keypair: String?
    /// The disk the server boots from.
    var rootDisk: String
    /// Who asked (a member of the target project, checked): recorded on the server.
    var requestedBy: String
    /// Cinder volumes (nil: volumes) or Glance images.
    var disksAs: RestoreTarget.InstanceDisks? = nil
    /// Per disk: the Cinder volume the provision task created for it...
    var volumes: [String: String]? = nil
    /// ...or the Glance image.
    var images: [String: String]? = nil
}

struct RestorePlan: Codable, Sendable, Equatable {
    var backupId: String
    /// Restores to files in this directory on the worker's host (`<disk>.img` raw, `<disk>.qcow2`)...
    var directory: String? = nil
    var disks: [String]
    var format: DiskFormat? = nil
    /// ...or onto a hypervisor...
    var libvirt: LibvirtRestoreTarget? = nil
    /// ...or into RBD images (a new instance's Cinder volumes are these too)...
    var rbd: RBDRestoreTarget? = nil
    /// ...as a new Nova server.
    var instance: InstanceRestoreTarget? = nil
    /// Per disk: its size, written in ranges of `rangeBytes` by one restore task each.
    var diskSizes: [String: UInt64]
    var rangeBytes: UInt64
    /// Per disk, when the target starts as zeros (a new file or image): the offsets of the
    /// ranges that hold data, the only ones with a task (see `ranges(of:)`). Nil: every range,
    /// as a restore over existing data needs (its zero ranges must be cleared).
    var dataRanges: [String: [UInt64]]? = nil

    /// The offsets of the ranges of `disk` that get a restore task: every range, or those with
    /// data; at least one (a disk of size 0 or all zeros too), whose task creates the target.
    func ranges(of disk: String) -> [UInt64] {
        if let ranges = dataRanges?[disk] { return ranges.isEmpty ? [0] : ranges }
        return Array(stride(from: UInt64(0), to: max(1, diskSizes[disk] ?? 0), by: Int(rangeBytes)))
    }

    func rangeCount(of disk: String) -> Int { ranges(of: disk).count }

    /// The restore tasks: one per range of each disk that gets one.
    func tasks(_ job: JobReference) -> [TaskEvent] {
        let parameters = TaskEvent.parameters(self)
        return disks.flatMap { disk in
            ranges(of: disk).map { offset in
                TaskEvent(taskId: "\(job.jobId).restore.\(disk).\(offset)", job: job, kind: .restore, disk: disk,
                          range: ByteRange(offset: offset, length: min(rangeBytes, max(1, (diskSizes[disk] ?? 0) - offset))),
                          parameters: parameters)
            }
        }
    }
}

struct LibvirtRestoreTarget: Codable, Sendable, Equatable {
    var hypervisor: String
    var domain: String
    /// Per disk: the file to create and its format.
    var files: [String: String]
    var formats: [String: String]
    var start: Bool
}

/// The metadata saved with a backup: who it belongs to, so later incrementals find their parent.
struct BackupMetadata: Codable, Sendable, Equatable {
    var project: String
    var instance: String
    var jobId: String
    var disks: [String]
    /// The domain XML, disk map and hypervisor identity, for backups taken from libvirt.
    var libvirt: LibvirtSource? = nil
    /// The cluster, images and kept snapshots, for backups taken from RBD.
    var rbd: RBDSource? = nil
    /// The Nova server with its flavor, key pair, volumes, ports, networks, security groups and
    /// image: what a restore as a new instance recreates.
    var openstack: InstanceRecord? = nil
    /// The volumes and the proxy they were read through, for backups taken by disk attachment.
    var attachment: AttachmentSource? = nil
}

/// A Cinder volume the disk-attachment strategy reads, and what it made for it: the snapshot,
/// and the volume made from that snapshot which is attached to the proxy server.
struct AttachedVolume: Codable, Sendable, Equatable {
    /// The backup's name for the disk (`vda`).
    var disk: String
    var volumeID: String
    var snapshotID: String? = nil
    var cloneID: String? = nil
}

/// The order of a disk-attachment backup's `snapshot` task, and (with the snapshots and
/// volumes made) of its `attach` task.
struct AttachmentOrder: Codable, Sendable, Equatable {
    var backupId: String
    /// The Nova server the volumes are attached to for reading.
    var proxyServer: String
    var volumes: [AttachedVolume]
    var mode: BackupMode
    var plannedAt: Double
    /// The Nova server the volumes belong to, when the backup is of one: its metadata is saved.
    var server: String? = nil
}

/// Where a disk-attachment backup read its volumes: the proxy server, its domain on the
/// hypervisor entry that reaches it, and per disk the volume and how the attached copy shows
/// in that domain (a file or block device on the hypervisor, or an RBD image).
struct AttachmentSource: Codable, Sendable, Equatable {
    var proxyServer: String
    var hypervisor: String
    var domain: String
    var volumes: [String: AttachedVolume]
    var backings: [String: DomainDescription.Disk.Backing]

    /// What releases this backup's copies.
    func release(backupId: String) -> AttachmentRelease {
        AttachmentRelease(backupId: backupId, proxyServer: proxyServer, disks: volumes.keys.sorted())
    }
}

/// Detach and delete what a disk-attachment backup made (after its commit, or after it failed).
struct AttachmentRelease: Codable, Sendable, Equatable {
    var backupId: String
    var proxyServer: String
    var disks: [String]
}

/// The name of what a job makes in OpenStack for one of its disks (a volume, a snapshot, an
/// image): `lifeboat-<job>-<disk>`, so that a redelivered task, the cleanup or a rollback finds
/// it by name whatever an earlier attempt got to record.
func jobResourceName(job: String, disk: String) -> String { "lifeboat-\(job)-\(disk)" }

extension TaskEvent {
    static func parameters(_ value: some Encodable) -> [String: JSONValue] {
        guard let data = try? JSONEncoder().encode(value), case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: data) else {
            preconditionFailure("task parameters must encode as a JSON object")
        }
        return object
    }

    func parameters<T: Decodable>(as type: T.Type) throws -> T {
        guard let parameters else { throw TaskFailure("task \(taskId) carries no parameters") }
        do {
            return try JSONDecoder().decode(T.self, from: JSONEncoder().encode(parameters))
        } catch {
            throw TaskFailure("task \(taskId) has unreadable parameters: \(error)")
        }
    }
}

/// The task's backup is no longer begun: its job was cancelled, or failed in another task, which
/// already reported it. Nothing to retry and nothing to report.
struct JobAbandoned: Error {}

/// A failure that another attempt cannot fix (the request names a disk the domain lacks, a
/// disk of a kind this strategy cannot read): the job fails at once, without retries.
struct PermanentFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Why a task failed, in words that go into the job's `failed` result.
struct TaskFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs blocking work (file and repository I/O) on Dispatch's threads, never on Swift's
/// cooperative pool, and resumes the caller when it is done.
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global(qos: .utility).async {
            continuation.resume(with: Result { try body() })
        }
    }
}
