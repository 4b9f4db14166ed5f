import AMQP
import Ceph
import Events
import Foundation
import Logging
import OpenStack
import Publisher
import Repository

/// Restore as a new OpenStack instance, in a target project whose membership the planner
/// checked for the user who asked (vProtect's rule).
///
/// `provision` creates one Cinder volume per disk in the target project (named
/// `lifeboat-<job>-<disk>`, so a redelivered task finds them instead of making more), marks the
/// root one bootable, and hands the disks to the RBD strategy's restore tasks, which write each
/// range straight into the volume's RBD image (`volume-<id>` in the pool the Ceph cluster list
/// maps the volume's Cinder backend to). `restore-finalize` then makes the server: the saved
/// flavor (or the one asked for), booted from the root volume with the other volumes attached,
/// the saved key pair (recreated for its owner if it was deleted since, and imported for
/// Lifeboat's user, which Nova looks it up under), the saved networks where the target project
/// sees them, the saved security groups (recreated with their rules where missing), the saved
/// metadata and tags, plus `lifeboat_*` keys naming the backup, the job and who asked.
///
/// With `disksAs: images` the disks go through Glance instead (see `InstanceRestore+Images`).
/// A job that fails removes what it made (`rollback`): the server, the images and the volumes.
struct InstanceRestore: Sendable {
    let repository: Repository
    let inventory: OpenStackInventory?
    let clusters: CephClusterDirectory
    let rbd: RBDStrategy
    let logger: Logger

    static let jobKey = "lifeboat_job"

    private func cloud() throws -> OpenStackInventory {
        guard let inventory else {
            throw PermanentFailure("OpenStack is not configured on this worker (LIFEBOAT_OPENSTACK_CLOUD): it cannot restore a new instance")
        }
        return inventory
    }

    /// Lifeboat's session in the target project; Keystone refusing it is the operator's to fix.
    func session(in project: String) throws -> KeystoneSession {
        let session = try cloud().session(inProject: project)
        do {
            try session.authenticate()
        } catch let error as OpenStackError {
            if case .credentialsRefused = error {
                throw PermanentFailure("Lifeboat's OpenStack user may not act in project \(project) (Keystone refused a token scoped to it): "
                                       + "give it a role there, e.g. `openstack role add --project \(project) --user <lifeboat user> member`")
            }
            throw error
        }
        return session
    }

    // MARK: - Provision

    func provision(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        var plan = try task.parameters(as: RestorePlan.self)
        guard var target = plan.instance else { throw PermanentFailure("provision task \(task.taskId) has no instance to restore") }
        if target.disksAs == .images {
            let images = try await runBlocking { [plan, target] in try self.createImages(plan, target: target, job: task.job.jobId) }
            target.images = images
            plan.instance = target
            return [.result(JobResult(job: task.job, status: .started, task: TaskSummary(taskId: task.taskId, kind: .provision),
                                      backupId: plan.backupId,
                                      details: ["project": target.project,
                                                "images": plan.disks.map { "\($0)=\(images[$0] ?? "?")" }.joined(separator: ", ")]))]
                + plan.tasks(task.job).map { .task($0) }
        }
        let (volumes, location) = try await runBlocking { [plan, target] in try self.createVolumes(plan, target: target, job: task.job.jobId) }
        target.volumes = volumes
        plan.instance = target
        plan.rbd = RBDRestoreTarget(cluster: location.cluster, pool: location.pool, images: volumes.mapValues { "volume-\($0)" },
                                    overwrite: true, existingOnly: true)
        let listed = plan.disks.map { "\($0)=\(volumes[$0] ?? "?")" }.joined(separator: ", ")
        return [.result(JobResult(job: task.job, status: .started, task: TaskSummary(taskId: task.taskId, kind: .provision),
                                  backupId: plan.backupId, details: ["project": target.project, "volumes": listed,
                                                                     "cluster": location.cluster, "pool": location.pool]))]
            + plan.tasks(task.job).map { .task($0) }
    }

    /// One available volume per disk (found again by name, or created at the disk's size in
    /// whole GiB), and the Ceph cluster and pool they all live in.
    private func createVolumes(_ plan: RestorePlan, target: InstanceRestoreTarget,
                               job: String) throws -> ([String: String], (cluster: String, pool: String)) {
        let cinder = try CinderClient(session: try session(in: target.project))
        var volumes: [String: String] = [:]
        var location: (cluster: String, pool: String)?
        for disk in plan.disks {
            let name = jobResourceName(job: job, disk: disk)
            let existing = try cinder.volumes(filters: ["name": name]).first { $0.name == name }
            let gib = Self.gibibytes(plan.diskSizes[disk] ?? 0)
            let volume = try existing ?? cinder.createVolume(VolumeCreateRequest(
                size: gib, name: name, description: "Lifeboat: disk \(disk) of backup \(plan.backupId)",
                metadata: [Self.jobKey: job, "lifeboat_backup": plan.backupId, "lifeboat_disk": disk]))
            let ready = try cinder.waitForVolume(volume.id, timeout: 600)
            if disk == target.rootDisk, !ready.bootable { try cinder.setBootable(ready.id) }
            guard let place = ready.location else {
                throw PermanentFailure("Cinder does not say where volume \(ready.id) lives (os-vol-host-attr:host needs an admin role)")
            }
            guard let found = clusters.cinderPool(host: place.host, backend: place.backend) else {
                throw PermanentFailure("volume \(ready.id) is in Cinder backend \(place.backend ?? place.host), which no Ceph cluster of "
                                       + "LIFEBOAT_CEPH_CLUSTERS lists under openstackBackends: Lifeboat cannot write it")
            }
            if let location, location != found {
                throw PermanentFailure("the new volumes are in different Ceph pools (\(location.cluster)/\(location.pool), \(found.cluster)/\(found.pool))")
            }
            location = found
            volumes[disk] = ready.id
        }
        guard let location else { throw PermanentFailure("the restore names no disk") }
        return (volumes, location)
    }

    // MARK: - Server

    func finalize(_ task: TaskEvent, plan: RestorePlan, target: InstanceRestoreTarget) async throws -> [OutgoingMessage] {
        if let images = plan.rbd { _ = try await rbd.finishImages(task, plan: plan, target: images) }
        let repository = self.repository
        let (server, details) = try await runBlocking { () -> (Server, [String: String]) in
            let metadata = try JSONDecoder().decode(BackupMetadata.self, from: try repository.manifest(plan.backupId).metadata)
            guard let record = metadata.openstack else { throw PermanentFailure("backup \(plan.backupId) has no saved instance") }
            return try self.createServer(plan, target: target, record: record, job: task.job.jobId)
        }
        return [.result(JobResult(job: task.job, status: .succeeded, backupId: plan.backupId,
                                  details: details.merging(["server": server.id, "name": server.name, "project": target.project,
                                                            "status": server.status]) { _, new in new }))]
    }

    /// The server of this job (found again by its `lifeboat_job` metadata, or created), ACTIVE.
    private func createServer(_ plan: RestorePlan, target: InstanceRestoreTarget, record: InstanceRecord,
                              job: String) throws -> (Server, [String: String]) {
        let session = try session(in: target.project)
        let nova = try NovaClient(session: session)
        var details: [String: String] = [:]
        let id: String
        if let made = try nova.servers().first(where: { $0.metadata[Self.jobKey] == job }) {
            id = made.id
        } else {
            let keyName = try keyPair(record, target: target, nova: nova, job: job, details: &details)
            let networking = try TargetNetworking(session: session, project: target.project, logger: logger)
            let networks = try networking.networks(requested: target.networks, savedPorts: record.ports, savedNetworks: record.networks)
            var groups: [String]?
            if case .attached = networks { groups = try networking.securityGroups(record.securityGroups) }
            var metadata = record.server.metadata
            metadata[Self.jobKey] = job
            metadata["lifeboat_backup"] = plan.backupId
            metadata["lifeboat_restored_from"] = record.server.id
            metadata["lifeboat_restored_by"] = target.requestedBy
            let (imageRef, mappings) = try diskMappings(plan, target: target)
            let tags = (record.server.tags ?? []).isEmpty ? nil : record.server.tags
            let created: String
            do {
                created = try nova.createServer(ServerCreateRequest(name: target.name, flavorRef: target.flavorID, imageRef: imageRef,
                                                                    blockDeviceMappings: mappings, networks: networks, keyName: keyName,
                                                                    metadata: metadata, securityGroups: groups, tags: tags))
            } catch let error as HTTPError where error.statusCode == 400 {
                throw PermanentFailure("Nova refused the server: \(error)")  // the same request would be refused again
            }
            logger.info("server created for a restore", metadata: ["job": "\(job)", "server": "\(created)", "project": "\(target.project)"])
            id = try keepOne(of: job, created: created, nova: nova)
        }
        let server: Server
        do {
            server = try nova.waitForServer(id, timeout: 600)
        } catch let error as OpenStackError {
            if case .resourceFailed = error { throw PermanentFailure("the new server \(id) failed: \(error)") }
            throw error
        }
        if let images = target.images {
            // The data disks are volumes now; their images were only the way there.
            let glance = try GlanceClient(session: session)
            for disk in plan.disks where disk != target.rootDisk {
                if let image = images[disk] { _ = try? glance.deleteImage(image) }
            }
            details["image"] = images[target.rootDisk]
        }
        return (server, details)
    }

    /// What the server boots from and what is attached: the root volume and the others
    /// (volumes), or the root image and volumes Nova makes from the other images (images).
    private func diskMappings(_ plan: RestorePlan, target: InstanceRestoreTarget) throws -> (String?, [BlockDeviceMapping]) {
        let others = plan.disks.filter { $0 != target.rootDisk }
        if let images = target.images {
            guard let root = images[target.rootDisk] else { throw PermanentFailure("the root disk has no image (the provision task did not run?)") }
            let data = try others.map { disk in
                guard let image = images[disk] else { throw PermanentFailure("disk \(disk) has no image (the provision task did not run?)") }
                return BlockDeviceMapping(bootIndex: -1, uuid: image, sourceType: "image", destinationType: "volume",
                                          volumeSize: Self.gibibytes(plan.diskSizes[disk] ?? 0), deleteOnTermination: false)
            }
            // With block_device_mapping_v2 Nova wants the root image listed too, as boot index 0.
            let boot = BlockDeviceMapping(bootIndex: 0, uuid: root, sourceType: "image", destinationType: "local", deleteOnTermination: true)
            return (root, [boot] + data)
        }
        let volumes = target.volumes ?? [:]
        let mappings = try ([target.rootDisk] + others).map { disk in
            guard let volume = volumes[disk] else { throw PermanentFailure("disk \(disk) has no volume (the provision task did not run?)") }
            return BlockDeviceMapping(bootIndex: disk == target.rootDisk ? 0 : nil, uuid: volume, sourceType: "volume",
                                      destinationType: "volume", deleteOnTermination: false)
        }
        return (nil, mappings)
    }

    /// Two deliveries of `restore-finalize` (two last ranges finishing at once) may each have
    /// made a server: the first made stays, the others go.
    private func keepOne(of job: String, created: String, nova: NovaClient) throws -> String {
        let made = try nova.servers().filter { $0.metadata[Self.jobKey] == job }.sorted { ($0.created ?? "", $0.id) < ($1.created ?? "", $1.id) }
        guard let kept = made.first else { return created }
        for extra in made.dropFirst() {
            logger.notice("a second server made for one restore removed", metadata: ["job": "\(job)", "server": "\(extra.id)"])
            try nova.deleteServer(extra.id)
        }
        return kept.id
    }

    /// The key pair the server gets, by name. Nova looks the name up among the creating user's
    /// own pairs, so the saved public key is imported for Lifeboat's user (under another name
    /// when it already has a different key of that name); the owner's pair is recreated, through
    /// the admin API, when it was deleted since the backup.
    private func keyPair(_ record: InstanceRecord, target: InstanceRestoreTarget, nova: NovaClient, job: String,
                         details: inout [String: String]) throws -> String? {
        if let named = target.keypair {
            do {
                _ = try nova.keyPair(named: named)
            } catch let error as HTTPError where error.statusCode == 404 {
                throw PermanentFailure("Lifeboat's user has no key pair named \(named)")
            }
            return named
        }
        guard let saved = record.keyPair else { return nil }
        if let owner = saved.userID {
            let admin = try NovaClient(session: try cloud().session)
            do {
                _ = try admin.keyPair(named: saved.name, userID: owner)
            } catch let error as HTTPError where error.statusCode == 404 {
                _ = try admin.createKeyPair(named: saved.name, publicKey: saved.publicKey, type: saved.type, userID: owner)
                details["keypairRecreatedFor"] = owner
            }
        }
        func sameKey(_ a: String, _ b: String) -> Bool {
            a.split(separator: " ").prefix(2) == b.split(separator: " ").prefix(2)
        }
        for name in [saved.name, "\(saved.name)-\(job)"] {
            do {
                if sameKey(try nova.keyPair(named: name).publicKey, saved.publicKey) { return name }
            } catch let error as HTTPError where error.statusCode == 404 {
                _ = try nova.createKeyPair(named: name, publicKey: saved.publicKey, type: saved.type)
                return name
            }
        }
        throw PermanentFailure("Lifeboat's user has other keys named \(saved.name) and \(saved.name)-\(job)")
    }

    // MARK: - Rollback

    /// Removes what a failed instance restore made: its server, then its images and volumes.
    func rollback(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let order = try task.parameters(as: InstanceRestoreRollback.self)
        // This worker's handles on the volumes' images: Cinder cannot delete an image that has watchers.
        if let images = order.images { rbd.closeImages(images, job: task.job) }
        let removed = try await runBlocking { () -> [String] in
            let session = try self.session(in: order.project)
            let nova = try NovaClient(session: session), cinder = try CinderClient(session: session)
            var removed: [String] = []
            // Volumes Nova made from the images have no name of ours: they go as the server's.
            var serversVolumes: Set<String> = []
            for server in try nova.servers() where server.metadata[Self.jobKey] == order.job {
                serversVolumes.formUnion(server.attachedVolumes.map(\.id))
                try nova.deleteServer(server.id)
                try nova.waitForServerDeletion(server.id, timeout: 600)
                removed.append("server \(server.id)")
            }
            let glance = try GlanceClient(session: session)
            for image in try glance.images() where image.properties[Self.jobKey] == order.job {
                try glance.deleteImage(image.id)
                removed.append("image \(image.id)")
            }
            let prefix = jobResourceName(job: order.job, disk: "")
            for volume in try cinder.volumes() where serversVolumes.contains(volume.id)
                || volume.name?.hasPrefix(prefix) == true && volume.metadata[Self.jobKey] == order.job {
                if volume.status != "available" { _ = try? cinder.waitForVolume(volume.id, timeout: 300) }
                try cinder.deleteVolume(volume.id)
                try cinder.waitForVolumeDeletion(volume.id, timeout: 300)
                removed.append("volume \(volume.id)")
            }
            return removed
        }
        logger.info("failed instance restore rolled back", metadata: ["job": "\(order.job)", "removed": "\(removed.joined(separator: ", "))"])
        return []
    }

    /// The rollback of a failed instance restore's task, or nil for any other task.
    static func rollbackTask(for task: TaskEvent) -> TaskEvent? {
        guard [.provision, .restore, .restoreFinalize].contains(task.kind),
              let plan = try? task.parameters(as: RestorePlan.self), let target = plan.instance else { return nil }
        return TaskEvent(taskId: "\(task.job.jobId).rollback", job: task.job, kind: .cleanup,
                         parameters: TaskEvent.parameters(InstanceRestoreRollback(job: task.job.jobId, project: target.project, images: plan.rbd)))
    }
}

/// Undo a failed restore as a new instance: the server and volumes its job made in `project`.
struct InstanceRestoreRollback: Codable, Sendable, Equatable {
    var job: String
    var project: String
    /// The volumes' images, once provisioned.
    var images: RBDRestoreTarget?
}
