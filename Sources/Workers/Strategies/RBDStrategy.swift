import AMQP
import Ceph
import Events
import Foundation
import Logging
import Publisher
import Repository
import Synchronization

/// The Ceph strategy: RBD images (Cinder volumes, Nova ephemeral disks, Glance images) read
/// through librbd in user space.
///
/// Backup: the `snapshot` task snapshots every image (`lifeboat-<backup>`) and decides full or
/// incremental: an incremental reads the changes since the snapshot the parent backup kept, and
/// becomes a full (saying why) when that snapshot is gone. A first, whole-object pass over the
/// changes (answered from the object map where fast-diff is on) picks the ranges that changed
/// at all, so an unchanged image, however large, gets no transfer task. Each `transfer` task
/// lists the exact extents of its range (`rbd_diff_iterate2`) and reads them with aio reads in
/// flight. After the commit, `cleanup` removes Lifeboat's older snapshots of those images,
/// keeping this backup's for the next incremental; snapshots Lifeboat did not make are never
/// touched. A failed or cancelled job's snapshots are removed (`rollback`).
///
/// Restore: each disk into a new image (sparse: zero chunks are not written) that gets its name
/// only when whole, or over an existing image when the request says so (zero chunks are then
/// discarded, so nothing of the old content remains).
struct RBDStrategy: Sendable {
    let repository: Repository
    let clusters: CephClusterDirectory
    let rangeBytes: UInt64
    let logger: Logger
    /// Images restores write into, kept open between their range tasks.
    private let restoring = OpenImages()

    var step: UInt64 { BackupPlan.step(rangeBytes, chunkSize: repository.chunkSize) }

    /// The kept connection to a cluster. A refused key will not get better by retrying: it fails
    /// the job at once; a timeout drops the connection so the retry makes a new one.
    func connect(_ name: String) throws -> RadosCluster {
        do {
            return try clusters.connect(name)
        } catch let error as CephConfigurationError {
            throw PermanentFailure(error.description)
        } catch let error as CephError where error.isPermissionDenied {
            throw PermanentFailure("\(error) (check the keyring and the user's capabilities)")
        }
    }

    /// Runs `body` against the cluster; a Ceph timeout forgets the connection before rethrowing.
    private func withCluster<T>(_ name: String, _ body: (RadosCluster) throws -> T) throws -> T {
        let cluster = try connect(name)
        do {
            return try body(cluster)
        } catch let error as CephError where error.isTimeout || error.code == -ESHUTDOWN || error.code == -ENOTCONN {
            clusters.forget(name)
            throw error
        }
    }

    // MARK: - Backup

    func snapshot(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let order = try task.parameters(as: RBDSnapshotOrder.self)
        let (plan, details) = try await runBlocking { try self.takeSnapshots(order, instance: task.job.instance ?? "_") }
        let transfers = plan.transferTasks(task.job, step: step).map { OutgoingMessage.task($0) }
        return [.result(JobResult(job: task.job, status: .started, task: TaskSummary(taskId: task.taskId, kind: .snapshot),
                                  backupId: plan.backupId, details: details))] + transfers
    }

    /// Snapshots every image (a redelivered task finds its snapshots and takes none), decides
    /// full or incremental, plans the ranges to read, and begins the backup.
    private func takeSnapshots(_ order: RBDSnapshotOrder, instance: String) throws -> (BackupPlan, [String: String]) {
        try withCluster(order.cluster) { cluster in
            let images = try snapshotImages(cluster, disks: order.disks, backupId: order.backupId)
            var details = ["cluster": order.cluster, "snapshot": RBDSource.snapshotName(order.backupId)]
            var parent: String?
            if order.mode == .incremental {
                switch try incrementalParent(cluster: order.cluster, disks: order.disks, backupId: order.backupId, instance: instance, images: images) {
                case .success(let found): parent = found
                case .failure(let reason): details["fallback"] = "full: \(reason.description)"
                }
            }
            details["parent"] = parent ?? "none"
            let planned = try planImages(cluster, disks: order.disks, images: images, backupId: order.backupId, parent: parent)
            if parent != nil { details["changedObjectBytes"] = "\(planned.changedBytes)" }
            try repository.beginBackup(order.backupId, parent: parent)
            let ranges = BackupPlan.ranges(planned.disks, step: step)
            let plan = BackupPlan(backupId: order.backupId, parent: parent, disks: planned.disks, rangeCount: ranges.count,
                                  totalBytes: ranges.reduce(0) { $0 + $1.range.length }, plannedAt: order.plannedAt,
                                  rbd: planned.source)
            return (plan, details)
        }
    }

    typealias SnapshottedImages = [String: (image: RBDImage, snapshots: [RBDSnapshot])]

    /// Takes `lifeboat-<backup>` on every disk's image unless an earlier attempt did. Also how
    /// the libvirt strategy freezes a domain's RBD disks, next to its file disks.
    func snapshotImages(_ cluster: RadosCluster, disks: [RBDDisk], backupId: String) throws -> SnapshottedImages {
        let snapshot = RBDSource.snapshotName(backupId)
        var images: SnapshottedImages = [:]
        for disk in disks {
            guard let image = try cluster.pool(disk.pool).openImage(disk.image, readOnly: false) else {
                throw PermanentFailure("disk \(disk.name): there is no image \(disk.pool)/\(disk.image) in cluster \(cluster.name)")
            }
            var snapshots = try image.snapshots()
            if !snapshots.contains(where: { $0.name == snapshot }) {
                try image.createSnapshot(snapshot)
                snapshots = try image.snapshots()
            }
            images[disk.name] = (image, snapshots)
        }
        return images
    }

    /// The frozen images as plan disks and the source record. Only ranges with something to
    /// read are planned, found by the cheap whole-object pass (`rbd_diff_iterate2`, from the
    /// object map with fast-diff): for an incremental those whose objects changed since the
    /// parent's snapshot, for a full those with allocated objects (the rest are zero ranges).
    func planImages(_ cluster: RadosCluster, disks: [RBDDisk], images: SnapshottedImages, backupId: String,
                    parent: String?) throws -> (disks: [BackupPlan.Disk], source: RBDSource, changedBytes: UInt64) {
        let snapshot = RBDSource.snapshotName(backupId)
        let since = parent.map(RBDSource.snapshotName)
        var planned: [BackupPlan.Disk] = []
        var sources: [String: RBDSource.Image] = [:]
        var changedBytes: UInt64 = 0
        for disk in disks {
            let frozen = try RBDImage(pool: images[disk.name]!.image.pool, name: disk.image, snapshot: snapshot, readOnly: true)
            let size = try frozen.size()
            var plannedDisk = BackupPlan.Disk(name: disk.name, path: frozen.spec, size: size)
            let changed = try frozen.changedExtents(since: since, offset: 0, length: size, wholeObject: true)
            let ranges = Array(Set(changed.flatMap { extent in
                stride(from: extent.range.lowerBound / step * step, to: extent.range.upperBound, by: Int(step)).map { $0 }
            })).sorted()
            plannedDisk.changedRanges = ranges
            if since == nil {
                plannedDisk.zeroRanges = Self.gaps(between: ranges, step: step, size: size)
            } else {
                changedBytes += changed.reduce(0) { $0 + UInt64($1.range.count) }
            }
            planned.append(plannedDisk)
            sources[disk.name] = RBDSource.Image(pool: disk.pool, image: disk.image, snapshot: snapshot, since: since)
        }
        return (planned, RBDSource(cluster: cluster.name, fsid: (try? cluster.fsid()) ?? "", images: sources), changedBytes)
    }

    /// The runs of `[0, size)` not covered by the ranges of `step` bytes starting at `ranges`
    /// (ascending), each run as one range.
    static func gaps(between ranges: [UInt64], step: UInt64, size: UInt64) -> [ByteRange] {
        var gaps: [ByteRange] = []
        var next: UInt64 = 0
        for offset in ranges {
            if offset > next { gaps.append(ByteRange(offset: next, length: offset - next)) }
            next = max(next, min(offset + step, size))
        }
        if next < size { gaps.append(ByteRange(offset: next, length: size - next)) }
        return gaps
    }

    /// The instance's newest committed backup, when every disk still has the snapshot it kept
    /// and is the same image at the same size; otherwise why the backup must be a full.
    func incrementalParent(cluster: String, disks: [RBDDisk], backupId: String, instance: String,
                           images: SnapshottedImages) throws -> Result<String, PermanentFailure> {
        guard let parent = try latestBackup(of: instance, in: repository) else {
            return .failure(PermanentFailure("no earlier backup of this instance"))
        }
        let manifest = try repository.manifest(parent)
        guard let source = (try? JSONDecoder().decode(BackupMetadata.self, from: manifest.metadata))?.rbd, source.cluster == cluster else {
            return .failure(PermanentFailure("the last backup, \(parent), was not taken from cluster \(cluster)"))
        }
        let kept = RBDSource.snapshotName(parent)
        for disk in disks {
            guard let earlier = source.images[disk.name], earlier.pool == disk.pool, earlier.image == disk.image else {
                return .failure(PermanentFailure("disk \(disk.name) is not the image backup \(parent) read"))
            }
            guard let snapshot = images[disk.name]?.snapshots.first(where: { $0.name == kept }) else {
                return .failure(PermanentFailure("snapshot \(disk.pool)/\(disk.image)@\(kept), kept for this incremental, is gone"))
            }
            guard manifest.disks.first(where: { $0.name == disk.name })?.size == snapshot.size,
                  images[disk.name]?.snapshots.first(where: { $0.name == RBDSource.snapshotName(backupId) })?.size == snapshot.size else {
                return .failure(PermanentFailure("disk \(disk.name) changed size since backup \(parent)"))
            }
        }
        return .success(parent)
    }

    /// Copies one range of a snapshot into the repository: its exact changed (or allocated)
    /// extents, read with aio reads in flight.
    func transfer(_ plan: BackupPlan, source: RBDSource, disk: BackupPlan.Disk, range: ByteRange) throws {
        guard let image = source.images[disk.name] else { throw TaskFailure("disk \(disk.name) has no RBD image in its plan") }
        let readsInFlight = clusters.entries[source.cluster]?.readsInFlight ?? 8
        let read = try withCluster(source.cluster) { cluster -> UInt64 in
            guard let frozen = try cluster.pool(image.pool).openImage(image.image, snapshot: image.snapshot, readOnly: true) else {
                throw PermanentFailure("snapshot \(image.pool)/\(image.image)@\(image.snapshot) was removed during the backup")
            }
            // Allocated extents for a full, changed ones for an incremental (partly changed chunks
            // start from the parent's), read with aio reads in flight.
            let reader = try RBDImageSource(image: frozen, since: image.since, readsInFlight: readsInFlight)
            do {
                try repository.backupRange(placing: reader, extents: image.since == nil ? .dataElsewhereZero : .changesSinceParent,
                                           backup: plan.backupId, disk: disk.name, offset: range.offset, length: range.length)
                return reader.bytesRead
            } catch let error as CephError where error.isNotFound {
                throw PermanentFailure("snapshot \(image.pool)/\(image.image)@\(image.since ?? image.snapshot) was removed during the backup (\(error))")
            }
        }
        WorkerMetrics.sourceBytes(read, strategy: "rbd")
    }

    /// After the commit: Lifeboat's older snapshots of these images go (those of backups still
    /// running stay); this backup's is kept for the next incremental.
    func cleanup(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let plan = try task.parameters(as: BackupPlan.self)
        guard let source = plan.rbd else { throw TaskFailure("cleanup task \(task.taskId) has no RBD source") }
        let removed = try await runBlocking { try releaseOlderSnapshots(source) }
        let manifest = try await runBlocking { try repository.manifest(plan.backupId) }
        var details = ["parent": plan.parent ?? "none", "bytes": "\(plan.disks.reduce(UInt64(0)) { $0 + $1.size })",
                       "newStoredBytes": "\(manifest.disks.reduce(UInt64(0)) { $0 + $1.newStoredBytes })",
                       "kept": source.images.sorted { $0.key < $1.key }.map { "\($0.value.pool)/\($0.value.image)@\($0.value.snapshot)" }
                           .joined(separator: ", ")]
        if !removed.isEmpty { details["removed"] = removed.joined(separator: ", ") }
        return [.result(JobResult(job: task.job, status: .succeeded, backupId: plan.backupId, details: details))]
    }

    /// Removes Lifeboat's snapshots of the source's images other than the kept one (those of
    /// backups still running stay); what it removed, as `pool/image@snapshot`.
    func releaseOlderSnapshots(_ source: RBDSource) throws -> [String] {
        try withCluster(source.cluster) { cluster in
            var removed: [String] = []
            for (_, kept) in source.images.sorted(by: { $0.key < $1.key }) {
                // An image deleted since has nothing to keep or remove.
                guard let image = try cluster.pool(kept.pool).openImage(kept.image, readOnly: false) else { continue }
                for old in try image.snapshots() where old.name != kept.snapshot {
                    guard let backup = RBDSource.snapshotBackup(old.name), try !repository.isBegun(backup) else { continue }
                    if try image.removeSnapshotIfPresent(old.name) { removed.append("\(kept.pool)/\(kept.image)@\(old.name)") }
                }
            }
            return removed
        }
    }

    /// Removes backup `backupId`'s snapshot from each image ("pool/image"), where it exists.
    func removeSnapshots(of backupId: String, cluster name: String, images: [String]) throws {
        let cluster = try connect(name)
        for spec in images {
            let parts = spec.split(separator: "/", maxSplits: 1).map(String.init)
            guard parts.count == 2, let image = try cluster.pool(parts[0]).openImage(parts[1], readOnly: false) else { continue }
            try image.removeSnapshotIfPresent(RBDSource.snapshotName(backupId))
        }
    }

    /// Removes a failed or cancelled backup's snapshots (the parent's stay, so the next
    /// incremental still starts from them).
    func rollback(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let order = try task.parameters(as: RBDRollbackOrder.self)
        try await runBlocking {
            do {
                try removeSnapshots(of: order.backupId, cluster: order.cluster, images: order.images)
            } catch let refused as PermanentFailure {
                logger.warning("rollback cannot reach the cluster", metadata: ["backup": "\(order.backupId)", "error": "\(refused)"])
            }
        }
        logger.info("snapshots rolled back", metadata: ["backup": "\(order.backupId)", "images": "\(order.images)"])
        return []
    }

    static func rollbackTask(for task: TaskEvent) -> TaskEvent? {
        let order: RBDRollbackOrder
        if let snapshot = try? task.parameters(as: RBDSnapshotOrder.self) {
            order = RBDRollbackOrder(backupId: snapshot.backupId, cluster: snapshot.cluster, images: snapshot.disks.map { "\($0.pool)/\($0.image)" })
        } else if let plan = try? task.parameters(as: BackupPlan.self), let source = plan.rbd {
            order = RBDRollbackOrder(backupId: plan.backupId, cluster: source.cluster,
                                     images: source.images.values.map { "\($0.pool)/\($0.image)" }.sorted())
        } else {
            return nil
        }
        return TaskEvent(taskId: "\(task.job.jobId).rollback", job: task.job, kind: .cleanup, parameters: TaskEvent.parameters(order))
    }

    // MARK: - Restore

    /// The image a restore range writes into: a job-named partial image for a new one, the
    /// target itself when overwriting.
    static func workingImage(_ target: RBDRestoreTarget, disk: String, job: JobReference) -> String {
        let name = target.images[disk] ?? disk
        return target.overwrite ? name : "\(name).lifeboat-partial-\(job.jobId)"
    }

    /// Range markers (image metadata on the working image): `lifeboat.restored.<offset>`.
    static let markerPrefix = "lifeboat.restored."

    /// Writes one range of one disk; the range task that finds every range written asks for
    /// `restore-finalize`.
    func restore(_ task: TaskEvent, plan: RestorePlan, target: RBDRestoreTarget, disk: String, range: ByteRange) async throws -> [OutgoingMessage] {
        let repository = self.repository
        let complete = try await runBlocking { () -> Bool in
            try withCluster(target.cluster) { cluster in
                let pool = try cluster.pool(target.pool)
                let size = try repository.diskSize(backup: plan.backupId, disk: disk)
                let working = Self.workingImage(target, disk: disk, job: task.job)
                let key = "\(target.cluster)/\(target.pool)/\(working)"
                let image = try restoring.image(key) { () throws -> RBDImage in
                    if target.existingOnly == true, try !pool.imageExists(working) {
                        throw PermanentFailure("the image \(target.pool)/\(working) to restore into is gone (was its volume deleted?)")
                    }
                    return try openForRestore(pool, working, size: size)
                }
                if try image.metadata(Self.markerPrefix + "\(range.offset)") == nil {
                    // Over an existing image the range is cleared first: the backup's zero chunks
                    // are not written, and the old bytes must not show through.
                    if target.overwrite { try image.discard(at: range.offset, length: min(range.length, size - range.offset)) }
                    // Chunks in order, gathered into object-sized aio writes.
                    let writer = RBDAsyncWriter(image: image, inFlight: 8, bufferSize: 4 << 20)
                    do {
                        try repository.streamDisk(backup: plan.backupId, disk: disk, offset: range.offset, length: range.length) { offset, bytes in
                            try writer.append(at: offset, bytes)
                        }
                    } catch {
                        try? writer.finish()  // no write may outlive its buffers
                        restoring.close(key)
                        throw error
                    }
                    try writer.finish()
                    try image.setMetadata(Self.markerPrefix + "\(range.offset)", "done")
                }
                return try plan.disks.allSatisfy { disk in
                    let name = Self.workingImage(target, disk: disk, job: task.job)
                    guard let working = try pool.openImage(name, readOnly: true) else {
                        // Finalized already (renamed), or not started.
                        if target.overwrite { return false }
                        return try pool.imageExists(target.images[disk] ?? disk)
                    }
                    return try working.metadataKeys(prefix: Self.markerPrefix).count >= plan.rangeCount(of: disk)
                }
            }
        }
        var messages: [OutgoingMessage] = [.result(JobResult(job: task.job, status: .progress,
                                                              task: TaskSummary(taskId: task.taskId, kind: .restore, disk: disk),
                                                              backupId: plan.backupId,
                                                              details: ["image": "\(target.pool)/\(target.images[disk] ?? disk)"]))]
        if complete {
            messages.append(.task(TaskEvent(taskId: "\(task.job.jobId).restore-finalize", job: task.job, kind: .restoreFinalize,
                                            parameters: task.parameters)))
        }
        return messages
    }

    /// The working image, created at the disk's size if missing (another range task may be
    /// creating it at the same moment), grown if smaller.
    private func openForRestore(_ pool: RadosPool, _ name: String, size: UInt64) throws -> RBDImage {
        if try !pool.imageExists(name) {
            do {
                try pool.createImage(name, size: size)
            } catch where error.code == -EEXIST {
                // Another range task created it first.
            }
        }
        let image = try RBDImage(pool: pool, name: name, readOnly: false)
        if try image.size() < size { try image.resize(to: size) }
        return image
    }

    /// Gives each new image its name (idempotent) and clears the range markers.
    func restoreFinalize(_ task: TaskEvent, plan: RestorePlan, target: RBDRestoreTarget) async throws -> [OutgoingMessage] {
        let images = try await finishImages(task, plan: plan, target: target)
        return [.result(JobResult(job: task.job, status: .succeeded, backupId: plan.backupId,
                                  details: ["cluster": target.cluster, "images": images.joined(separator: ", ")]))]
    }

    /// Closes this worker's handles on a restore's images (before someone else deletes them).
    func closeImages(_ target: RBDRestoreTarget, job: JobReference) {
        for disk in target.images.keys { restoring.close("\(target.cluster)/\(target.pool)/\(Self.workingImage(target, disk: disk, job: job))") }
    }

    /// The images of a restore made whole: named, markers cleared, no handle kept. Returns "pool/image" of each.
    func finishImages(_ task: TaskEvent, plan: RestorePlan, target: RBDRestoreTarget) async throws -> [String] {
        try await runBlocking { () -> [String] in
            try withCluster(target.cluster) { cluster in
                let pool = try cluster.pool(target.pool)
                return try plan.disks.map { disk in
                    let final = target.images[disk] ?? disk, working = Self.workingImage(target, disk: disk, job: task.job)
                    restoring.close("\(target.cluster)/\(target.pool)/\(working)")
                    if let image = try pool.openImage(working, readOnly: false) {
                        for key in try image.metadataKeys(prefix: Self.markerPrefix) { try image.removeMetadata(key) }
                    }
                    if !target.overwrite, try pool.imageExists(working) {
                        try Self.rename(pool, working, to: final)
                    }
                    return "\(target.pool)/\(final)"
                }
            }
        }
    }
}

extension RBDStrategy {
    /// Gives a finished working image its name. The two last range tasks may both ask for
    /// `restore-finalize`: the run that finds the other already renamed the image is done too.
    static func rename(_ pool: RadosPool, _ working: String, to final: String) throws {
        do {
            try pool.renameImage(working, to: final)
        } catch {
            let renamedByTheOther = try (error.code == -EEXIST || error.isNotFound) && !pool.imageExists(working)
            if !renamedByTheOther { throw error }
        }
    }
}

/// Images a worker's restore tasks write into, one open handle each, kept between the tasks of
/// a job: two handles on one image in one process would be two clients of its exclusive lock,
/// passed back and forth between them as their writes interleave. A handle unused for five
/// minutes is closed (another worker may have finished the job and renamed the image).
private final class OpenImages: Sendable {
    private let images = Mutex<[String: (image: RBDImage, used: ContinuousClock.Instant)]>([:])
    private static let idle = Duration.seconds(300)

    /// The open image under `key`, opened by `open` on first use (under the lock: one handle).
    func image(_ key: String, open: () throws -> RBDImage) throws -> RBDImage {
        try images.withLock { images in
            let now = ContinuousClock.now
            images = images.filter { now - $0.value.used < Self.idle }
            let image = try images[key]?.image ?? open()
            images[key] = (image, now)
            return image
        }
    }

    /// Forgets (and so closes, once no task uses it) the image under `key`.
    func close(_ key: String) {
        _ = images.withLock { $0.removeValue(forKey: key) }
    }
}
