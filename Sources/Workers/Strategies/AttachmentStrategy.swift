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
/// `snapshot`: each volume gets a Cinder snapshot (forced: the volume may be in use), and a
/// volume is made from that snapshot; both are named `lifeboat-<backup>-<disk>`, so a retry, a
/// cleanup or a rollback finds them by name. `attach`: those volumes are attached to the proxy
/// server (`LIFEBOAT_ATTACHMENT_PROXY`) through Nova and found in its libvirt domain by their
/// serial (Nova sets it to the volume id). The transfers read each one as the proxy's
/// hypervisor sees it — a file or block device that Nova's os-brick connected there, read over
/// SSH, or an RBD image read through the hypervisor's Ceph cluster — so only the proxy's
/// hypervisor needs to be in `LIFEBOAT_HYPERVISORS`. After the commit, `cleanup` detaches the
/// volumes and deletes them and the snapshots; a failed or cancelled job's rollback does the same.
///
/// Cinder keeps no record of changed blocks: every backup reads the whole volume, and the
/// repository's deduplication stores only what changed. An incremental request says so in its
/// result.
struct AttachmentStrategy: Sendable {
    let repository: Repository
    let libvirt: LibvirtStrategy
    let inventory: OpenStackInventory?
    let logger: Logger

    /// The name of the snapshot and of the volume made from it for one disk of a backup.
    static func resourceName(backup: String, disk: String) -> String { "lifeboat-\(backup)-\(disk)" }

    private func clients() throws -> (NovaClient, CinderClient) {
        guard let inventory else {
            throw PermanentFailure("disk attachment needs OpenStack, which is not configured on this worker (LIFEBOAT_OPENSTACK_CLOUD)")
        }
        return (try NovaClient(session: inventory.session), try CinderClient(session: inventory.session))
    }

    // MARK: - Snapshot

    func snapshot(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let planned = try task.parameters(as: AttachmentOrder.self)
        var order = planned
        order.volumes = try await runBlocking { try self.snapshotVolumes(planned) }
        return [.result(JobResult(job: task.job, status: .started, task: TaskSummary(taskId: task.taskId, kind: .snapshot),
                                  backupId: order.backupId,
                                  details: ["proxyServer": order.proxyServer,
                                            "snapshots": order.volumes.compactMap(\.snapshotID).joined(separator: ", ")])),
                .task(TaskEvent(taskId: "\(task.job.jobId).attach", job: task.job, kind: .attach, parameters: TaskEvent.parameters(order)))]
    }

    /// Each volume's snapshot and the volume made from it, made unless an earlier attempt did.
    private func snapshotVolumes(_ order: AttachmentOrder) throws -> [AttachedVolume] {
        let (_, cinder) = try clients()
        return try order.volumes.map { volume in
            let name = Self.resourceName(backup: order.backupId, disk: volume.disk)
            var made = volume
            var snapshot = try cinder.snapshots(allProjects: true, filters: ["name": name]).first
            if let failed = snapshot, failed.status == "error" {
                // Cinder gave up on it: make another.
                try cinder.deleteSnapshot(failed.id)
                try cinder.waitForSnapshotDeletion(failed.id)
                snapshot = nil
            }
            if snapshot == nil {
                do {
                    snapshot = try cinder.createSnapshot(ofVolume: volume.volumeID, name: name,
                                                         description: "Lifeboat backup \(order.backupId), disk \(volume.disk)", force: true)
                } catch let error as HTTPError where error.statusCode == 404 {
                    throw PermanentFailure("disk \(volume.disk): Cinder has no volume \(volume.volumeID)")
                }
            }
            let ready = try cinder.waitForSnapshot(snapshot!.id)
            made.snapshotID = ready.id
            let clone = try cinder.volumes(allProjects: true, filters: ["name": name]).first
                ?? cinder.createVolume(fromSnapshot: ready.id, size: ready.size, name: name)
            made.cloneID = clone.id
            if clone.status != "in-use" { try cinder.waitForVolume(clone.id) }
            return made
        }
    }

    // MARK: - Attach

    func attach(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let order = try task.parameters(as: AttachmentOrder.self)
        let (plan, details) = try await runBlocking { try self.attachAndPlan(order) }
        let transfers = plan.transferTasks(task.job, step: libvirt.step).map { OutgoingMessage.task($0) }
        return [.result(JobResult(job: task.job, status: .started, task: TaskSummary(taskId: task.taskId, kind: .attach),
                                  backupId: plan.backupId, details: details))] + transfers
    }

    /// Attaches the volumes to the proxy (those not attached yet), finds them in its domain,
    /// and begins the backup.
    private func attachAndPlan(_ order: AttachmentOrder) throws -> (BackupPlan, [String: String]) {
        let (nova, cinder) = try clients()
        let proxy: Server
        do {
            proxy = try nova.server(order.proxyServer)
        } catch let error as HTTPError where error.statusCode == 404 {
            throw PermanentFailure("the proxy server \(order.proxyServer) (LIFEBOAT_ATTACHMENT_PROXY) does not exist")
        }
        guard let host = proxy.host, let domainName = proxy.instanceName,
              let hypervisor = OpenStackInventory.hypervisorEntry(host: host, hypervisorHostname: proxy.hypervisorHostname, in: libvirt.hypervisors) else {
            throw PermanentFailure("the proxy server \(proxy.id) runs on compute host \(proxy.host ?? "?"), which is not in LIFEBOAT_HYPERVISORS: "
                                   + "disk attachment reads the volumes there")
        }
        let attached = Set(try nova.volumeAttachments(ofServer: proxy.id).map(\.volumeID))
        let clones = try order.volumes.map { volume -> String in
            guard let clone = volume.cloneID else { throw TaskFailure("disk \(volume.disk) has no volume to attach in its order") }
            return clone
        }
        for clone in clones where !attached.contains(clone) { _ = try nova.attachVolume(clone, toServer: proxy.id) }
        for clone in clones { try cinder.waitForVolume(clone, status: "in-use") }

        let connection = try libvirt.connect(hypervisor)
        let domain = try connection.domain(domainName)
        var disks: [BackupPlan.Disk] = [], backings: [String: DomainDescription.Disk.Backing] = [:]
        for volume in order.volumes {
            guard let found = domain.disks.first(where: { $0.serial == volume.cloneID }) else {
                throw TaskFailure("volume \(volume.cloneID ?? "?") is attached to the proxy, but its domain \(domainName) shows no disk with that serial yet")
            }
            switch found.backing {
            case .file(let path) where !path.isEmpty:
                let chain = try connection.chain(of: path)
                disks.append(BackupPlan.Disk(name: volume.disk, path: path, size: chain.virtualSize, chain: chain))
            case .rbd(let spec):
                let image = try openRBD(spec, hypervisor: hypervisor)
                disks.append(BackupPlan.Disk(name: volume.disk, path: spec, size: try image.size()))
            default:
                throw PermanentFailure("volume \(volume.volumeID) shows on the proxy's hypervisor as \(found.backing), which Lifeboat cannot read there")
            }
            backings[volume.disk] = found.backing
        }
        var record: InstanceRecord?
        if let server = order.server, let inventory, let found = try inventory.server(server) { record = try inventory.record(of: found) }
        try repository.beginBackup(order.backupId, parent: nil)
        let source = AttachmentSource(proxyServer: proxy.id, hypervisor: hypervisor, domain: domainName,
                                      volumes: Dictionary(uniqueKeysWithValues: order.volumes.map { ($0.disk, $0) }), backings: backings)
        let plan = BackupPlan(backupId: order.backupId, parent: nil, disks: disks, rangeCount: BackupPlan.ranges(disks, step: libvirt.step).count,
                              totalBytes: disks.reduce(0) { $0 + $1.size }, plannedAt: order.plannedAt, openstack: record, attachment: source)
        var details = ["proxyServer": proxy.id, "hypervisor": hypervisor, "parent": "none"]
        if order.mode == .incremental { details["fallback"] = "full: disk attachment reads whole volumes (Cinder records no changed blocks)" }
        return (plan, details)
    }

    /// An attached volume that the proxy's hypervisor reaches as an RBD image, opened read-only
    /// through the hypervisor's Ceph cluster.
    private func openRBD(_ spec: String, hypervisor: String) throws -> RBDImage {
        guard let cluster = libvirt.hypervisors.entries[hypervisor]?.cephCluster else {
            throw PermanentFailure("the proxy's hypervisor \(hypervisor) reaches the attached volumes as RBD images but names no cephCluster "
                                   + "(LIFEBOAT_HYPERVISORS) to read them from")
        }
        let parts = spec.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw PermanentFailure("RBD source \(spec) is not pool/image") }
        guard let image = try libvirt.rbd.connect(cluster).pool(parts[0]).openImage(parts[1], readOnly: true) else {
            throw PermanentFailure("the attached volume \(spec) is gone (deleted during the backup?)")
        }
        return image
    }

    // MARK: - Transfer

    /// Copies one range of an attached volume into the repository: its allocated extents.
    func transfer(_ plan: BackupPlan, source: AttachmentSource, disk: BackupPlan.Disk, range: ByteRange) throws {
        switch source.backings[disk.name] {
        case .file?:
            try libvirt.transfer(plan, hypervisor: source.hypervisor, domain: source.domain, disk: disk, range: range)
        case .rbd(let spec)?:
            let reader = try RBDImageSource(image: try openRBD(spec, hypervisor: source.hypervisor), since: nil)
            try repository.backupRange(streaming: reader, extents: .dataElsewhereZero, backup: plan.backupId, disk: disk.name,
                                       offset: range.offset, length: range.length)
            WorkerMetrics.sourceBytes(reader.bytesRead, strategy: "attachment")
        default:
            throw TaskFailure("disk \(disk.name) has no attached volume in its plan")
        }
    }

    // MARK: - Release

    /// After the commit: the volumes are detached from the proxy and deleted, and so are the
    /// snapshots; then the job has succeeded.
    func cleanup(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let plan = try task.parameters(as: BackupPlan.self)
        guard let source = plan.attachment else { throw TaskFailure("cleanup task \(task.taskId) has no attached volumes") }
        try await runBlocking { try release(AttachmentRelease(backupId: plan.backupId, proxyServer: source.proxyServer, disks: plan.disks.map(\.name))) }
        let repository = self.repository
        let manifest = try await runBlocking { try repository.manifest(plan.backupId) }
        return [.result(JobResult(job: task.job, status: .succeeded, backupId: plan.backupId,
                                  details: ["parent": "none", "bytes": "\(plan.totalBytes)",
                                            "newStoredBytes": "\(manifest.disks.reduce(UInt64(0)) { $0 + $1.newStoredBytes })",
                                            "proxyServer": source.proxyServer,
                                            "volumes": source.volumes.values.map(\.volumeID).sorted().joined(separator: ", ")]))]
    }

    /// Detaches (from the proxy) and deletes a backup's volumes, then deletes its snapshots;
    /// whatever is already gone is skipped, so it can run any number of times.
    func release(_ release: AttachmentRelease) throws {
        let (nova, cinder) = try clients()
        let names = release.disks.map { Self.resourceName(backup: release.backupId, disk: $0) }
        let clones = try names.flatMap { try cinder.volumes(allProjects: true, filters: ["name": $0]) }
        for clone in clones {
            if clone.status == "attaching" || clone.status == "detaching" {
                throw TaskFailure("volume \(clone.id) is still \(clone.status): released on the next attempt")
            }
            for server in Set(clone.attachments.compactMap(\.serverID)) { _ = try nova.detachVolume(clone.id, fromServer: server) }
        }
        for clone in clones {
            if !clone.attachments.isEmpty { try cinder.waitForVolume(clone.id, timeout: 120) }
            try cinder.deleteVolume(clone.id)
        }
        for clone in clones { try cinder.waitForVolumeDeletion(clone.id) }
        // A snapshot with a volume made from it cannot go before that volume has.
        let snapshots = try names.flatMap { try cinder.snapshots(allProjects: true, filters: ["name": $0]) }
        for snapshot in snapshots { try cinder.deleteSnapshot(snapshot.id) }
        for snapshot in snapshots { try cinder.waitForSnapshotDeletion(snapshot.id) }
    }

    /// Releases a failed or cancelled backup's volumes and snapshots.
    func rollback(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let order = try task.parameters(as: AttachmentRelease.self)
        try await runBlocking { try release(order) }
        logger.info("attached volumes and snapshots released", metadata: ["backup": "\(order.backupId)", "disks": "\(order.disks)"])
        return []
    }

    static func rollbackTask(for task: TaskEvent) -> TaskEvent? {
        let order: AttachmentRelease
        if let attachment = try? task.parameters(as: AttachmentOrder.self) {
            order = AttachmentRelease(backupId: attachment.backupId, proxyServer: attachment.proxyServer, disks: attachment.volumes.map(\.disk))
        } else if let plan = try? task.parameters(as: BackupPlan.self), let source = plan.attachment {
            order = AttachmentRelease(backupId: plan.backupId, proxyServer: source.proxyServer, disks: plan.disks.map(\.name))
        } else {
            return nil
        }
        return TaskEvent(taskId: "\(task.job.jobId).rollback", job: task.job, kind: .cleanup, parameters: TaskEvent.parameters(order))
    }
}
