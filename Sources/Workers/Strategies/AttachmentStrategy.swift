import AMQP
import Ceph
import Events
import Foundation
import Libvirt
import Logging
import OpenStack
import Publisher
import Repository

/// The disk-attachment strategy: Cinder volumes read through a proxy server, whatever their
/// backend (LVM over iSCSI, NFS, a SAN, Ceph) and wherever the server using them runs.
///
/// `snapshot`: each volume gets a Cinder snapshot and a volume made from it (`VolumeCopies`).
/// `attach`: those copies are attached to the proxy server (`LIFEBOAT_ATTACHMENT_PROXY`) through
/// Nova and found in its libvirt domain by their serial (Nova sets it to the volume id). The
/// transfers read each one as the proxy's hypervisor sees it — a file or block device that
/// Nova's os-brick connected there, read over SSH, or an RBD image read through the
/// hypervisor's Ceph cluster — so only the proxy's hypervisor needs to be in
/// `LIFEBOAT_HYPERVISORS`. After the commit, `cleanup` detaches the copies and deletes them and
/// the snapshots; a failed or cancelled job's rollback does the same. (A server whose other
/// disks the libvirt strategy reads gets its attached volumes in the same job: see
/// `LibvirtStrategy`.)
///
/// Cinder keeps no record of changed blocks: every backup reads the whole volume, and the
/// repository's deduplication stores only what changed. An incremental request says so in its
/// result.
struct AttachmentStrategy: Sendable {
    let repository: Repository
    let libvirt: LibvirtStrategy
    let logger: Logger

    private var copies: VolumeCopies { libvirt.volumeCopies }

    // MARK: - Snapshot

    func snapshot(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let planned = try task.parameters(as: AttachmentOrder.self)
        var order = planned
        order.volumes = try await runBlocking {
            try copies.clone(backup: planned.backupId, try copies.snapshot(backup: planned.backupId, planned.volumes))
        }
        return [.result(JobResult(job: task.job, status: .started, task: TaskSummary(taskId: task.taskId, kind: .snapshot),
                                  backupId: order.backupId,
                                  details: ["proxyServer": order.proxyServer,
                                            "snapshots": order.volumes.compactMap(\.snapshotID).joined(separator: ", ")])),
                .task(TaskEvent(taskId: "\(task.job.jobId).attach", job: task.job, kind: .attach, parameters: TaskEvent.parameters(order)))]
    }

    // MARK: - Attach

    func attach(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let order = try task.parameters(as: AttachmentOrder.self)
        let (plan, details) = try await runBlocking { try self.attachAndPlan(order) }
        let transfers = plan.transferTasks(task.job, step: libvirt.step).map { OutgoingMessage.task($0) }
        // `started` went out with the snapshots: this is a step of the running job.
        return [.result(JobResult(job: task.job, status: .progress, task: TaskSummary(taskId: task.taskId, kind: .attach),
                                  backupId: plan.backupId, details: details))] + transfers
    }

    /// Attaches the copies to the proxy, finds them in its domain, and begins the backup.
    private func attachAndPlan(_ order: AttachmentOrder) throws -> (BackupPlan, [String: String]) {
        let proxy = try copies.attach(order.volumes, to: order.proxyServer)
        let (source, disks) = try libvirt.attachedDisks(order.volumes, proxy: proxy)
        var record: InstanceRecord?
        if let server = order.server, let inventory = libvirt.inventory, let found = try inventory.server(server) {
            record = try inventory.record(of: found)
        }
        try repository.beginBackup(order.backupId, parent: nil)
        let plan = BackupPlan(backupId: order.backupId, parent: nil, disks: disks, rangeCount: BackupPlan.ranges(disks, step: libvirt.step).count,
                              totalBytes: disks.reduce(0) { $0 + $1.size }, plannedAt: order.plannedAt, openstack: record, attachment: source)
        var details = ["proxyServer": proxy.id, "hypervisor": source.hypervisor, "parent": "none"]
        if order.mode == .incremental { details["fallback"] = "full: disk attachment reads whole volumes (Cinder records no changed blocks)" }
        return (plan, details)
    }

    // MARK: - Release

    /// After the commit: the copies are detached from the proxy and deleted, and so are the
    /// snapshots; then the job has succeeded.
    func cleanup(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let plan = try task.parameters(as: BackupPlan.self)
        guard let source = plan.attachment else { throw TaskFailure("cleanup task \(task.taskId) has no attached volumes") }
        try await runBlocking { try copies.release(source.release(backupId: plan.backupId)) }
        let repository = self.repository
        let manifest = try await runBlocking { try repository.manifest(plan.backupId) }
        return [.result(JobResult(job: task.job, status: .succeeded, backupId: plan.backupId,
                                  details: ["parent": "none", "bytes": "\(plan.totalBytes)",
                                            "newStoredBytes": "\(manifest.disks.reduce(UInt64(0)) { $0 + $1.newStoredBytes })",
                                            "proxyServer": source.proxyServer,
                                            "volumes": source.volumes.values.map(\.volumeID).sorted().joined(separator: ", ")]))]
    }

    /// Releases a failed or cancelled backup's copies and snapshots.
    func rollback(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let order = try task.parameters(as: AttachmentRelease.self)
        try await runBlocking { try copies.release(order) }
        logger.info("attached volumes and snapshots released", metadata: ["backup": "\(order.backupId)", "disks": "\(order.disks)"])
        return []
    }

    static func rollbackTask(for task: TaskEvent) -> TaskEvent? {
        let order: AttachmentRelease
        if let attachment = try? task.parameters(as: AttachmentOrder.self) {
            order = AttachmentRelease(backupId: attachment.backupId, proxyServer: attachment.proxyServer, disks: attachment.volumes.map(\.disk))
        } else if let plan = try? task.parameters(as: BackupPlan.self), plan.libvirt == nil, let source = plan.attachment {
            order = source.release(backupId: plan.backupId)
        } else {
            return nil
        }
        return TaskEvent(taskId: "\(task.job.jobId).rollback", job: task.job, kind: .cleanup, parameters: TaskEvent.parameters(order))
    }
}

extension LibvirtStrategy {
    /// The volume copies attached to `proxy`, found in its domain by serial, as plan disks read
    /// on the proxy's hypervisor (which must be in `LIFEBOAT_HYPERVISORS`).
    func attachedDisks(_ volumes: [AttachedVolume], proxy: Server) throws -> (AttachmentSource, [BackupPlan.Disk]) {
        guard let host = proxy.host, let domainName = proxy.instanceName,
              let hypervisor = OpenStackInventory.hypervisorEntry(host: host, hypervisorHostname: proxy.hypervisorHostname, in: hypervisors) else {
            throw PermanentFailure("the proxy server \(proxy.id) runs on compute host \(proxy.host ?? "?"), which is not in LIFEBOAT_HYPERVISORS: "
                                   + "disk attachment reads the volumes there")
        }
        let connection = try connect(hypervisor)
        let domain = try connection.domain(domainName)
        var disks: [BackupPlan.Disk] = [], backings: [String: DomainDescription.Disk.Backing] = [:]
        for volume in volumes {
            guard let found = domain.disks.first(where: { $0.serial == volume.cloneID }) else {
                throw TaskFailure("volume \(volume.cloneID ?? "?") is attached to the proxy, but its domain \(domainName) shows no disk with that serial yet")
            }
            switch found.backing {
            case .file(let path) where !path.isEmpty:
                let chain = try connection.chain(of: path)
                disks.append(BackupPlan.Disk(name: volume.disk, path: path, size: chain.virtualSize, chain: chain))
            case .rbd(let spec):
                disks.append(BackupPlan.Disk(name: volume.disk, path: spec, size: try openAttachedRBD(spec, hypervisor: hypervisor).size()))
            default:
                throw PermanentFailure("volume \(volume.volumeID) shows on the proxy's hypervisor as \(found.backing), which Lifeboat cannot read there")
            }
            backings[volume.disk] = found.backing
        }
        let source = AttachmentSource(proxyServer: proxy.id, hypervisor: hypervisor, domain: domainName,
                                      volumes: Dictionary(uniqueKeysWithValues: volumes.map { ($0.disk, $0) }), backings: backings)
        return (source, disks)
    }

    /// An attached copy that the proxy's hypervisor reaches as an RBD image, opened read-only
    /// through the hypervisor's Ceph cluster.
    private func openAttachedRBD(_ spec: String, hypervisor: String) throws -> RBDImage {
        guard let cluster = hypervisors.entries[hypervisor]?.cephCluster else {
            throw PermanentFailure("the proxy's hypervisor \(hypervisor) reaches the attached volumes as RBD images but names no cephCluster "
                                   + "(LIFEBOAT_HYPERVISORS) to read them from")
        }
        let parts = spec.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw PermanentFailure("RBD source \(spec) is not pool/image") }
        guard let image = try rbd.connect(cluster).pool(parts[0]).openImage(parts[1], readOnly: true) else {
            throw PermanentFailure("the attached volume \(spec) is gone (deleted during the backup?)")
        }
        return image
    }

    /// Copies one range of an attached copy into the repository: its allocated extents.
    func transferAttached(_ plan: BackupPlan, source: AttachmentSource, disk: BackupPlan.Disk, range: ByteRange) throws {
        switch source.backings[disk.name] {
        case .file?:
            try transfer(plan, hypervisor: source.hypervisor, domain: source.domain, disk: disk, range: range)
        case .rbd(let spec)?:
            let reader = try RBDImageSource(image: try openAttachedRBD(spec, hypervisor: source.hypervisor), since: nil)
            try repository.backupRange(placing: reader, extents: .dataElsewhereZero, backup: plan.backupId, disk: disk.name,
                                       offset: range.offset, length: range.length)
            WorkerMetrics.sourceBytes(reader.bytesRead, strategy: "attachment")
        default:
            throw TaskFailure("disk \(disk.name) has no attached volume in its plan")
        }
    }
}
