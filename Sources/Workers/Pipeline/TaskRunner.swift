import AMQP
import Ceph
import Events
import Foundation
import Libvirt
import Logging
import Publisher
import Repository
import Synchronization

/// Runs task events from `lifeboat.tasks`: copies ranges into the repository, commits, restores.
///
/// Each task is idempotent (range records are named by range, a commit of a committed backup is
/// a no-op), so a redelivery after a crash repeats nothing harmful. A failing task is retried
/// through the delay queues with growing backoff; after `maxAttempts` its job fails with the
/// reason, and the backup's staging is removed (its chunks wait for GC, or for the rerun).
public final class TaskRunner: Sendable {
    public struct Counts: Sendable, Equatable {
        public var completed = 0
        public var retried = 0
        public var failed = 0
    }

    private let consumer: AMQPConsumer
    private let settler: DeliverySettler
    private let repository: Repository
    private let libvirt: LibvirtStrategy
    private let rbd: RBDStrategy
    private let instances: InstanceRestore
    private let attachment: AttachmentStrategy
    private let limiter: SourceLimiter
    private let maxAttempts: Int
    private let logger: Logger
    private let counts = Mutex(Counts())

    public var currentCounts: Counts { counts.withLock { $0 } }

    init(consumer: AMQPConsumer, publisher: LifeboatPublisher, repository: Repository, hypervisors: HypervisorDirectory,
         clusters: CephClusterDirectory, inventory: OpenStackInventory?, rangeBytes: UInt64, sourceConcurrency: Int, maxAttempts: Int,
         logger: Logger) {
        self.limiter = SourceLimiter(limit: sourceConcurrency)
        self.consumer = consumer
        self.settler = DeliverySettler(publisher: publisher, logger: logger)
        self.repository = repository
        self.libvirt = LibvirtStrategy(repository: repository, hypervisors: hypervisors, clusters: clusters, inventory: inventory,
                                       rangeBytes: rangeBytes, logger: logger)
        self.rbd = RBDStrategy(repository: repository, clusters: clusters, rangeBytes: rangeBytes, logger: logger)
        self.instances = InstanceRestore(repository: repository, inventory: inventory, clusters: clusters, rbd: rbd, logger: logger)
        self.attachment = AttachmentStrategy(repository: repository, libvirt: libvirt, logger: logger)
        self.maxAttempts = max(1, maxAttempts)
        self.logger = logger
    }

    /// Runs tasks until the consumer stops; its prefetch bounds how many run at once, per queue
    /// (urgent jobs' tasks have slots of their own).
    public func run() async {
        await withDiscardingTaskGroup { group in
            for await delivery in consumer.deliveries {
                group.addTask { await self.handle(delivery) }
            }
        }
    }

    private func handle(_ delivery: InboundDelivery) async {
        let task: TaskEvent
        do {
            task = try MessageCodec.decode(TaskEvent.self, from: delivery.body)
        } catch {
            await settler.reject(delivery, reason: error.description, job: nil)
            return
        }
        let attempt = Int(delivery.delivery.properties.headers[LifeboatTopology.Header.attempt]?.intValue ?? 1)
        if attempt == 1 { WorkerMetrics.queueLag(delivery.queue, publishedAt: task.createdAt) }
        let started = ContinuousClock.now
        do {
            let messages = try await execute(task)
            WorkerMetrics.taskDuration(task.kind.rawValue, since: started)
            if await settler.settle(delivery, publishing: messages) {
                counts.withLock { $0.completed += 1 }
                WorkerMetrics.task(task.kind.rawValue, outcome: "completed")
                if task.kind == .transfer, let range = task.range { WorkerMetrics.transferred(bytes: range.length) }
            }
        } catch is JobAbandoned {
            logger.info("task of an abandoned job dropped", metadata: ["task": "\(task.taskId)"])
            WorkerMetrics.task(task.kind.rawValue, outcome: "abandoned")
            // A cancelled backup still has its snapshot: merge it back, or remove it.
            await settler.settle(delivery, publishing: Self.rollbackTask(for: task).map { [.task($0)] } ?? [])
        } catch {
            await failed(task, attempt: attempt, error: error, delivery: delivery)
        }
    }

    private func execute(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        switch task.kind {
        case .snapshot where (try? task.parameters(as: AttachmentOrder.self)) != nil: return try await attachment.snapshot(task)
        case .snapshot where (try? task.parameters(as: RBDSnapshotOrder.self)) != nil: return try await rbd.snapshot(task)
        case .snapshot: return try await libvirt.snapshot(task)
        case .transfer: return try await transfer(task)
        case .finalize: return try await finalize(task)
        case .cleanup where (try? task.parameters(as: AttachmentRelease.self)) != nil: return try await attachment.rollback(task)
        case .cleanup where (try? task.parameters(as: BackupPlan.self)).map({ $0.attachment != nil && $0.libvirt == nil }) == true:
            return try await attachment.cleanup(task)
        case .cleanup where (try? task.parameters(as: InstanceRestoreRollback.self)) != nil: return try await instances.rollback(task)
        case .cleanup where (try? task.parameters(as: LibvirtRollbackOrder.self)) != nil: return try await libvirt.rollback(task)
        case .cleanup where (try? task.parameters(as: RBDRollbackOrder.self)) != nil: return try await rbd.rollback(task)
        case .cleanup where (try? task.parameters(as: BackupPlan.self)).map({ $0.rbd != nil && $0.libvirt == nil }) == true:
            return try await rbd.cleanup(task)
        case .cleanup: return try await libvirt.cleanup(task)
        case .provision: return try await instances.provision(task)
        case .restore: return try await restore(task)
        case .restoreFinalize: return try await restoreFinalize(task)
        case .attach: return try await attachment.attach(task)
        }
    }

    /// Copies one range of one disk, reports the job's progress, and (for the range that
    /// completes the backup) starts the commit.
    private func transfer(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let plan = try task.parameters(as: BackupPlan.self)
        guard let diskName = task.disk, let range = task.range, let disk = plan.disks.first(where: { $0.name == diskName }) else {
            throw TaskFailure("transfer task \(task.taskId) names no disk or range")
        }
        let repository = self.repository, libvirt = self.libvirt, rbd = self.rbd
        // Where the range is read from: a domain's RBD disks come from its Ceph cluster, not its host.
        let hypervisor: String? = plan.libvirt?.hypervisor ?? plan.attachment?.hypervisor
        let sourceHost = plan.rbd.flatMap { $0.images[disk.name] != nil ? "ceph:\($0.cluster)" : nil } ?? hypervisor.map { "libvirt:\($0)" } ?? "files"
        let staged = try await limiter.withSlot(sourceHost, urgent: task.job.isUrgent) { try await runBlocking { () -> [StagedRange] in
            // Another task's failure or a cancel abandoned the job: do not touch the source.
            guard try repository.isBegun(plan.backupId) else { throw JobAbandoned() }
            do {
                if let source = plan.attachment, source.volumes[disk.name] != nil {
                    try libvirt.transferAttached(plan, source: source, disk: disk, range: range)
                } else if let source = plan.rbd, source.images[disk.name] != nil {
                    try rbd.transfer(plan, source: source, disk: disk, range: range)
                } else if let source = plan.libvirt {
                    try libvirt.transfer(plan, source: source, disk: disk, range: range)
                } else if let chain = disk.chain {
                    // A qcow2 image on this host: its guest view, read as over SSH but locally.
                    try repository.backupRange(streaming: RemoteImageSource(shell: LocalShell(), host: "local", chain: chain, selection: .allData),
                                               extents: .dataElsewhereZero, backup: plan.backupId, disk: disk.name,
                                               offset: range.offset, length: range.length)
                } else {
                    try repository.backupRange(from: try LocalImageSource(path: disk.path), backup: plan.backupId, disk: disk.name,
                                               offset: range.offset, length: range.length)
                }
            } catch RepositoryError.backupNotBegun {
                throw JobAbandoned()
            } catch let failure as PermanentFailure {
                throw failure
            } catch {
                throw TaskFailure("disk \(disk.name) [\(range.offset), \(range.offset + range.length)) from \(disk.path): \(error)")
            }
            return try repository.stagedRanges(backup: plan.backupId)
        } }
        let done = staged.reduce(0) { $0 + $1.length }
        let elapsed = max(0.001, Date().timeIntervalSince1970 - plan.plannedAt)
        let rate = Double(done) / elapsed
        var messages: [OutgoingMessage] = [.result(JobResult(
            job: task.job, status: .progress, task: TaskSummary(taskId: task.taskId, kind: .transfer, disk: disk.name),
            progress: Progress(bytesDone: min(done, plan.totalBytes), bytesTotal: plan.totalBytes, bytesPerSecond: rate,
                               etaSeconds: rate > 0 ? Double(plan.totalBytes - min(done, plan.totalBytes)) / rate : nil),
            backupId: plan.backupId))]
        if staged.count >= plan.rangeCount {
            messages.append(.task(TaskEvent(taskId: "\(task.job.jobId).finalize", job: task.job, kind: .finalize, parameters: task.parameters)))
        }
        return messages
    }

    /// Commits the backup: from now on it is listed and restorable.
    private func finalize(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let plan = try task.parameters(as: BackupPlan.self)
        let metadata = try JSONEncoder().encode(BackupMetadata(project: task.job.project, instance: task.job.instance ?? "_",
                                                               jobId: task.job.jobId, disks: plan.disks.map(\.name), libvirt: plan.libvirt,
                                                               rbd: plan.rbd, openstack: plan.openstack, attachment: plan.attachment))
        let repository = self.repository
        let manifest = try await runBlocking { () -> BackupManifest in
            if try repository.isCommitted(plan.backupId) { return try repository.manifest(plan.backupId) }  // a redelivered finalize
            do {
                return try repository.commitBackup(plan.backupId, disks: plan.disks.map(\.layout),
                                                   metadata: metadata)
            } catch let error as RepositoryError {
                // The two last transfers may both ask for the finalize: the other run may have
                // committed the backup (and removed its staging) meanwhile.
                if try repository.isCommitted(plan.backupId) { return try repository.manifest(plan.backupId) }
                if case .backupNotBegun = error { throw JobAbandoned() }
                throw error
            }
        }
        if plan.libvirt != nil || plan.rbd != nil || plan.attachment != nil {
            // Visible now; the job succeeds once the previous overlay is merged (or the snapshot
            // removed, or the attached volumes released).
            return [.task(TaskEvent(taskId: "\(task.job.jobId).cleanup", job: task.job, kind: .cleanup, parameters: task.parameters))]
        }
        let stored = manifest.disks.reduce(UInt64(0)) { $0 + $1.newStoredBytes }
        return [.result(JobResult(job: task.job, status: .succeeded, backupId: plan.backupId,
                                  details: ["parent": plan.parent ?? "none", "bytes": "\(plan.totalBytes)", "newStoredBytes": "\(stored)"]))]
    }

    /// Writes one range of one disk of a backup to its target: files here, or a hypervisor.
    private func restore(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let plan = try task.parameters(as: RestorePlan.self)
        guard let disk = task.disk, let range = task.range else { throw PermanentFailure("restore task \(task.taskId) names no disk or range") }
        if let target = plan.instance, target.images != nil { return try await instances.upload(task, plan: plan, target: target, disk: disk) }
        if let target = plan.libvirt { return try await libvirt.restore(task, plan: plan, target: target, disk: disk, range: range) }
        if let target = plan.rbd { return try await rbd.restore(task, plan: plan, target: target, disk: disk, range: range) }
        guard let directory = plan.directory else { throw PermanentFailure("restore task \(task.taskId) has no target") }
        return try await FileRestore(repository: repository).restore(task, plan: plan, directory: directory, disk: disk, range: range)
    }

    private func restoreFinalize(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let plan = try task.parameters(as: RestorePlan.self)
        if let target = plan.instance { return try await instances.finalize(task, plan: plan, target: target) }
        if let target = plan.libvirt { return try await libvirt.restoreFinalize(task, plan: plan, target: target) }
        if let target = plan.rbd { return try await rbd.restoreFinalize(task, plan: plan, target: target) }
        guard let directory = plan.directory else { throw PermanentFailure("restore-finalize task \(task.taskId) has no target") }
        return try await FileRestore(repository: repository).finalize(task, plan: plan, directory: directory)
    }

    /// Retry later through the delay queue, or, out of attempts, fail the job and clean up.
    private func failed(_ task: TaskEvent, attempt: Int, error: any Error, delivery: InboundDelivery) async {
        let reason = "\(error)"
        let summary = TaskSummary(taskId: task.taskId, kind: task.kind, disk: task.disk, attempt: attempt)
        if attempt < maxAttempts, !(error is PermanentFailure) {
            logger.warning("task failed, will retry", metadata: ["task": "\(task.taskId)", "attempt": "\(attempt)", "error": "\(reason)"])
            if await settler.settle(delivery, publishing: [.retry(task, attempt: attempt + 1)]) {
                counts.withLock { $0.retried += 1 }
                WorkerMetrics.task(task.kind.rawValue, outcome: "retried")
            }
            return
        }
        logger.error("task failed for good", metadata: ["task": "\(task.taskId)", "attempts": "\(attempt)", "error": "\(reason)"])
        if task.kind == .transfer, let plan = try? task.parameters(as: BackupPlan.self),
           (try? await runBlocking({ [repository] in try !repository.isBegun(plan.backupId) })) == true {
            // The job already failed (another range reported it) or was cancelled.
            await settler.settle(delivery, publishing: [])
            return
        }
        var messages: [OutgoingMessage] = []
        if [.snapshot, .attach, .transfer, .finalize].contains(task.kind) {
            let backupId = (try? task.parameters(as: BackupPlan.self))?.backupId ?? (try? task.parameters(as: LibvirtSnapshotOrder.self))?.backupId
                ?? (try? task.parameters(as: RBDSnapshotOrder.self))?.backupId ?? (try? task.parameters(as: AttachmentOrder.self))?.backupId
            if let backupId {
                let repository = self.repository
                _ = try? await runBlocking { try repository.abandonBackup(backupId) }
            }
            if let rollback = Self.rollbackTask(for: task) { messages.append(.task(rollback)) }
        }
        if let rollback = InstanceRestore.rollbackTask(for: task) { messages.append(.task(rollback)) }
        let result = JobResult(job: task.job, status: .failed, reason: "\(task.kind.rawValue) failed after \(attempt) attempts: \(reason)",
                               task: summary)
        if await settler.settle(delivery, publishing: [.result(result)] + messages) {
            counts.withLock { $0.failed += 1 }
            WorkerMetrics.task(task.kind.rawValue, outcome: "failed")
        }
    }

    /// The task that undoes a failed or cancelled backup's snapshot, for the strategies that take one.
    static func rollbackTask(for task: TaskEvent) -> TaskEvent? {
        AttachmentStrategy.rollbackTask(for: task) ?? LibvirtStrategy.rollbackTask(for: task) ?? RBDStrategy.rollbackTask(for: task)
    }
}
