import AMQP
import Events
import Foundation
import OpenStack
import Publisher
import Repository

/// A restore as a new instance with its disks as Glance images (`disksAs: images`): what works
/// whatever the cloud stores volumes and images on, because every byte goes through Glance's API.
/// `provision` creates one queued image per disk (`lifeboat-<job>-<disk>`, found again by name
/// and job), each disk's single `restore` task streams it from the repository into its image
/// (Glance takes an image's data in one request), and `restore-finalize` boots the server from
/// the root image with the other disks as volumes Nova makes from theirs, then removes those
/// images (the root image stays: the server was made from it).
extension InstanceRestore {
    /// One queued (or, after a redelivery, already uploaded) raw image per disk in the target
    /// project. The root image carries the original image's `hw_*` and `os_*` properties (disk
    /// bus, SCSI model, OS type), which shape the restored server's virtual hardware.
    func createImages(_ plan: RestorePlan, target: InstanceRestoreTarget, job: String) throws -> [String: String] {
        let glance = try GlanceClient(session: try session(in: target.project))
        let metadata = try JSONDecoder().decode(BackupMetadata.self, from: try repository.manifest(plan.backupId).metadata)
        let hardware = (metadata.openstack?.image?.properties ?? [:]).filter { $0.key.hasPrefix("hw_") || $0.key.hasPrefix("os_") }
        var images: [String: String] = [:]
        for disk in plan.disks {
            let name = jobResourceName(job: job, disk: disk)
            var properties = [Self.jobKey: job, "lifeboat_backup": plan.backupId, "lifeboat_disk": disk]
            if disk == target.rootDisk { properties.merge(hardware) { mine, _ in mine } }
            let image = try glance.images(name: name).first { $0.properties[Self.jobKey] == job }
                ?? glance.createImage(ImageCreateRequest(name: name, minDisk: Self.gibibytes(plan.diskSizes[disk] ?? 0), properties: properties))
            images[disk] = image.id
        }
        return images
    }

    /// Streams one disk from the repository into its image (unless a first delivery did); the
    /// task that finds every image uploaded asks for `restore-finalize`.
    func upload(_ task: TaskEvent, plan: RestorePlan, target: InstanceRestoreTarget, disk: String) async throws -> [OutgoingMessage] {
        guard let image = target.images?[disk] else { throw PermanentFailure("disk \(disk) has no image to upload into") }
        let repository = self.repository
        let complete = try await runBlocking { () -> Bool in
            let glance = try GlanceClient(session: try self.session(in: target.project))
            let status: String
            do {
                status = try glance.image(image).status
            } catch let error as HTTPError where error.statusCode == 404 {
                throw PermanentFailure("the image \(image) to upload disk \(disk) into is gone")
            }
            switch status {
            case "active": break  // uploaded by an earlier delivery
            case "queued":
                let size = try repository.diskSize(backup: plan.backupId, disk: disk)
                try glance.uploadImageData(image, body: .stream(length: Int64(size)) {
                    RepositoryDiskReader(repository: repository, backup: plan.backupId, disk: disk, size: size)
                })
            default:
                throw TaskFailure("image \(image) of disk \(disk) is \(status), not ready for an upload")
            }
            _ = try glance.waitForImage(image, timeout: 600)
            return try plan.disks.allSatisfy { try glance.image(target.images?[$0] ?? "").status == "active" }
        }
        var messages: [OutgoingMessage] = [.result(JobResult(job: task.job, status: .progress,
                                                              task: TaskSummary(taskId: task.taskId, kind: .restore, disk: disk),
                                                              backupId: plan.backupId, details: ["image": image]))]
        if complete {
            messages.append(.task(TaskEvent(taskId: "\(task.job.jobId).restore-finalize", job: task.job, kind: .restoreFinalize,
                                            parameters: task.parameters)))
        }
        return messages
    }

    static func gibibytes(_ bytes: UInt64) -> Int { Int(max(1, (bytes + (1 << 30) - 1) >> 30)) }
}

/// A disk of a backup read front to back as one byte stream, zero chunks as zeros: what an
/// upload that pulls its body (libcurl's read callback) reads. It goes window by window through
/// the repository's ordered, parallel-decoding stream, so at most one window is held.
final class RepositoryDiskReader: HTTPBodyReader {
    private let repository: Repository
    private let backup: String
    private let disk: String
    private let size: UInt64
    private var window: [UInt8] = []
    private var windowStart: UInt64 = 0
    private var position: UInt64 = 0
    /// A multiple of every chunk size the repository allows, so no chunk straddles two windows.
    static let windowBytes: UInt64 = 32 << 20

    init(repository: Repository, backup: String, disk: String, size: UInt64) {
        self.repository = repository
        self.backup = backup
        self.disk = disk
        self.size = size
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard position < size, let base = buffer.baseAddress else { return 0 }
        if position >= windowStart + UInt64(window.count) { try load(at: position) }
        let offset = Int(position - windowStart)
        let count = min(buffer.count, window.count - offset)
        window.withUnsafeBytes { base.copyMemory(from: $0.baseAddress! + offset, byteCount: count) }
        position += UInt64(count)
        return count
    }

    private func load(at start: UInt64) throws {
        let length = min(Self.windowBytes, size - start)
        var filled = [UInt8](repeating: 0, count: Int(length))
        try repository.streamDisk(backup: backup, disk: disk, offset: start, length: length) { offset, bytes in
            // Only the part of a chunk inside the window (chunks are aligned to it; this is a guard).
            let from = max(offset, start), to = min(offset + UInt64(bytes.count), start + length)
            guard from < to else { return }
            filled.withUnsafeMutableBytes { window in
                (window.baseAddress! + Int(from - start)).copyMemory(from: bytes.baseAddress! + Int(from - offset), byteCount: Int(to - from))
            }
        }
        window = filled
        windowStart = start
    }
}
