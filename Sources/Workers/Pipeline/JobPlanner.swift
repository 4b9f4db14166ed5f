import AMQP
import Ceph
import Events
import Foundation
import Libvirt
import Logging
import OpenStack
import Publisher
import Repository

/// Turns a request into its job's tasks: the `RequestHandler` a worker with a repository uses.
///
/// A backup becomes one `transfer` task per bounded range of each disk (so no delivery is held
/// near RabbitMQ's 30-minute consumer timeout, and several workers share one big disk); the
/// transfer that completes the last range publishes `finalize`, which commits. A restore becomes
/// one `restore` task per range of each disk, and the last one publishes `restore-finalize`,
/// which gives the files their names (and defines the domain). Every id is derived from the request id, so a replayed request
/// plans the same job again, harmlessly.
///
/// Sources: image files on the worker's host, libvirt domains on hypervisors, RBD images, Cinder
/// volumes (by disk attachment), Nova servers (resolved to one of those). Targets: files, a
/// hypervisor, RBD images, a new Nova server (a `provision` task first makes its volumes).
public struct JobPlanner: RequestHandler {
    public struct Settings: Sendable {
        /// Bytes per transfer task (rounded to whole chunks).
        public var rangeBytes: UInt64
        /// Directories whose image files a request may name as a source. A request comes from
        /// another system: without this, it could have a worker copy any file it can read
        /// (keys, password databases) into the repository. Empty: no file sources at all.
        public var fileSourceRoots: [String]
        /// Directories a restore to files may write into, for the same reason.
        public var restoreRoots: [String]
        /// The Nova server Cinder volumes are attached to for disk attachment; nil: no disk attachment.
        public var attachmentProxy: String?
        /// Cinder backends (`backend` or `host@backend`, `*` for all) whose volumes a server's
        /// backup reads by disk attachment instead of on the server's hypervisor.
        public var attachmentBackends: [String]

        public init(rangeBytes: UInt64 = 256 << 20, fileSourceRoots: [String] = [], restoreRoots: [String] = [],
                    attachmentProxy: String? = nil, attachmentBackends: [String] = []) {
            self.rangeBytes = rangeBytes
            self.fileSourceRoots = fileSourceRoots
            self.restoreRoots = restoreRoots
            self.attachmentProxy = attachmentProxy
            self.attachmentBackends = attachmentBackends
        }

        /// Whether a server's backup reads `volume` by disk attachment.
        func readsByAttachment(_ volume: Volume) -> Bool {
            guard attachmentProxy != nil, let location = volume.location else { return false }
            let names = ["*", location.backend, location.backend.map { "\(location.host)@\($0)" }].compactMap { $0 }
            return attachmentBackends.contains(where: names.contains)
        }
    }

    let repository: Repository
    let settings: Settings
    let hypervisors: HypervisorDirectory
    let clusters: CephClusterDirectory
    let inventory: OpenStackInventory?

    init(repository: Repository, settings: Settings = Settings(), hypervisors: HypervisorDirectory = HypervisorDirectory(),
         clusters: CephClusterDirectory = CephClusterDirectory(), inventory: OpenStackInventory? = nil) {
        self.repository = repository
        self.settings = settings
        self.hypervisors = hypervisors
        self.clusters = clusters
        self.inventory = inventory
    }

    public init(repository: Repository, settings: Settings = Settings(), hypervisors: HypervisorDirectory = HypervisorDirectory(),
                clusters: CephClusterDirectory = CephClusterDirectory()) {
        self.init(repository: repository, settings: settings, hypervisors: hypervisors, clusters: clusters, inventory: nil)
    }

    public func plan(_ request: InboundRequest) async throws -> [OutgoingMessage] {
        switch request {
        case .backup(let backup): try await planBackup(backup, job: request.job)
        case .restore(let restore): try await planRestore(restore, job: request.job)
        case .cancel(let cancel): try await planCancel(cancel, job: request.job)
        }
    }

    private func planBackup(_ request: BackupRequest, job: JobReference) async throws -> [OutgoingMessage] {
        if case .libvirt(let host, let domain, let disks)? = request.source {
            return try await planLibvirtBackup(request, job: job, hypervisor: host, domain: domain, disks: disks)
        }
        if case .rbd(let cluster, let disks)? = request.source {
            return try await planRBDBackup(request, job: job, cluster: cluster, disks: disks)
        }
        if case .cinder(let disks)? = request.source {
            return try await planAttachmentBackup(request, job: job, disks: disks, server: nil)
        }
        if request.source == nil {
            return try await planServerBackup(request, job: job)
        }
        guard case .files(let disks)? = request.source else {
            let kind = request.source.map { "the \($0.kind.rawValue) strategy" } ?? "resolving the instance through OpenStack"
            throw RequestRefused("\(kind) is not available yet: this worker backs up image files on its host (source kind \"files\")")
        }
        for disk in disks where !Self.isInside(disk.path, settings.fileSourceRoots) {
            throw RequestRefused("disk \(disk.name): \(disk.path) is outside the directories this worker may read images from "
                                 + "(LIFEBOAT_FILE_SOURCES: \(settings.fileSourceRoots.isEmpty ? "none" : settings.fileSourceRoots.joined(separator: ":")))")
        }
        let backupId = job.jobId
        let repository = self.repository
        if let replayed = try await replayed(job) { return replayed }
        // Sized the way the transfers will read it (a block device's size is its end, not st_size).
        // Sized the way the transfers will read it: a raw file or block device by its end, a
        // qcow2 image by its guest-visible size (its chain is read through qemu-img's map).
        let sized = try await runBlocking {
            try disks.map { disk in
                if disk.format == .qcow2 {
                    guard let chain = try? Hypervisor(name: "local", shell: LocalShell()).chain(of: disk.path), chain.layers[0].format == "qcow2" else {
                        throw RequestRefused("disk \(disk.name): \(disk.path) is not a readable qcow2 image")
                    }
                    return BackupPlan.Disk(name: disk.name, path: disk.path, size: chain.virtualSize, chain: chain)
                }
                guard let source = try? LocalImageSource(path: disk.path) else {
                    throw RequestRefused("disk \(disk.name): cannot read \(disk.path)")
                }
                return BackupPlan.Disk(name: disk.name, path: disk.path, size: source.size)
            }
        }
        var details: [String: String] = [:]
        var parent: String?
        if request.mode == .incremental {
            parent = try await runBlocking { try latestBackup(of: request.instance, in: repository) }
            if parent == nil { details["fallback"] = "full: no earlier backup of this instance" }
        }
        try await runBlocking { [parent] in try repository.beginBackup(backupId, parent: parent) }

        let step = BackupPlan.step(settings.rangeBytes, chunkSize: repository.chunkSize)
        let plan = BackupPlan(backupId: backupId, parent: parent, disks: sized, rangeCount: BackupPlan.ranges(sized, step: step).count,
                              totalBytes: sized.reduce(0) { $0 + $1.size }, plannedAt: Date().timeIntervalSince1970)
        let messages: [OutgoingMessage] = [.result(JobResult(job: job, status: .accepted, backupId: backupId,
                                                             details: details.merging(["parent": parent ?? "none"]) { a, _ in a }))]
        return messages + plan.transferTasks(job, step: step).map { .task($0) }
    }

    private func planRestore(_ request: RestoreRequest, job: JobReference) async throws -> [OutgoingMessage] {
        try await checkMembership(request)
        if case .libvirt(let host, let name, let storage, let start) = request.target {
            return try await planLibvirtRestore(request, job: job, hypervisor: host, name: name, storageDirectory: storage, start: start)
        }
        if case .rbd(let cluster, let pool, let prefix, let overwrite) = request.target {
            return try await planRBDRestore(request, job: job, cluster: cluster, pool: pool, prefix: prefix, overwrite: overwrite)
        }
        if case .instance(let project, let name, let flavor, let networks, let keypair, let disksAs) = request.target {
            return try await planInstanceRestore(request, job: job, project: project, name: name, flavor: flavor, networks: networks,
                                                 keypair: keypair, disksAs: disksAs ?? .volumes)
        }
        guard case .files(let directory, let format) = request.target else {
            throw RequestRefused("restoring to \(request.target.kind.rawValue) is not available yet: this worker restores to files")
        }
        guard Self.isInside(directory, settings.restoreRoots) else {
            throw RequestRefused("\(directory) is outside the directories this worker may restore into "
                                 + "(LIFEBOAT_RESTORE_DIRECTORIES: \(settings.restoreRoots.isEmpty ? "none" : settings.restoreRoots.joined(separator: ":")))")
        }
        let (manifest, _, disks) = try await restoredBackup(request)
        let plan = RestorePlan(backupId: request.backupId, directory: directory, disks: disks, format: format,
                               diskSizes: Dictionary(uniqueKeysWithValues: manifest.disks.map { ($0.name, $0.size) }), rangeBytes: restoreStep,
                               dataRanges: try await rangesWithData(request.backupId, disks: disks))
        return [.result(JobResult(job: job, status: .accepted, backupId: request.backupId))] + plan.tasks(job).map { .task($0) }
    }

    /// The backup a restore reads: its manifest, its metadata (nil for a backup made without
    /// any), and the disks to restore (the request's, each checked to exist; else all, in the
    /// backup's order).
    func restoredBackup(_ request: RestoreRequest) async throws -> (BackupManifest, BackupMetadata?, [String]) {
        let repository = self.repository
        let manifest: BackupManifest
        do {
            manifest = try await runBlocking { try repository.manifest(request.backupId) }
        } catch {
            throw RequestRefused("backup \(request.backupId) does not exist in this repository")
        }
        let metadata = try? JSONDecoder().decode(BackupMetadata.self, from: manifest.metadata)
        let names = metadata?.disks ?? manifest.disks.map(\.name)
        let disks = request.disks ?? names
        if let unknown = disks.first(where: { !names.contains($0) }) {
            throw RequestRefused("backup \(request.backupId) has no disk \(unknown) (it has \(names.joined(separator: ", ")))")
        }
        return (manifest, metadata, disks)
    }

    /// Per disk, the restore ranges that hold data: for a target that starts as zeros.
    func rangesWithData(_ backupId: String, disks: [String]) async throws -> [String: [UInt64]] {
        let repository = self.repository, step = restoreStep
        return try await runBlocking {
            try Dictionary(uniqueKeysWithValues: disks.map { ($0, try repository.rangesWithData(backup: backupId, disk: $0, step: step)) })
        }
    }

    /// The results of a replayed backup request whose backup is already complete (accepted,
    /// then succeeded, marked as replayed); nil when it must be planned.
    func replayed(_ job: JobReference) async throws -> [OutgoingMessage]? {
        let repository = self.repository, backupId = job.jobId
        guard try await runBlocking({ try repository.isCommitted(backupId) }) else { return nil }
        return [.result(JobResult(job: job, status: .accepted, backupId: backupId)),
                .result(JobResult(job: job, status: .succeeded, backupId: backupId, details: ["replayed": "true"]))]
    }

    /// Bytes per restore task: like transfers, no delivery is held for long.
    var restoreStep: UInt64 { BackupPlan.step(settings.rangeBytes, chunkSize: repository.chunkSize) }
}

extension JobPlanner {
    /// A libvirt backup starts with its snapshot task; the hypervisor is only touched there
    /// (with retries), so planning never waits on SSH.
    /// `attached`: the server's volumes read by disk attachment instead, in the same job.
    func planLibvirtBackup(_ request: BackupRequest, job: JobReference, hypervisor: String, domain: String,
                           disks: [String]?, attached: [CinderDisk]? = nil) async throws -> [OutgoingMessage] {
        do {
            _ = try hypervisors.endpoint(hypervisor)
        } catch {
            throw RequestRefused("\(error)")
        }
        let backupId = job.jobId
        if let replayed = try await replayed(job) { return replayed }
        let order = LibvirtSnapshotOrder(backupId: backupId, hypervisor: hypervisor, domain: domain, disks: disks, mode: request.mode,
                                         plannedAt: Date().timeIntervalSince1970, instance: request.instance,
                                         attachedVolumes: attached?.map { AttachedVolume(disk: $0.name, volumeID: $0.volume) },
                                         proxyServer: attached == nil ? nil : settings.attachmentProxy)
        return [.result(JobResult(job: job, status: .accepted, backupId: backupId, details: ["hypervisor": hypervisor, "domain": domain])),
                .task(TaskEvent(taskId: "\(job.jobId).snapshot", job: job, kind: .snapshot, parameters: TaskEvent.parameters(order)))]
    }

    /// A restore onto a hypervisor: checked there first (the domain name must be free and no
    /// file may be overwritten), then one restore task per range of each disk.
    func planLibvirtRestore(_ request: RestoreRequest, job: JobReference, hypervisor: String, name: String?,
                            storageDirectory: String?, start: Bool) async throws -> [OutgoingMessage] {
        do {
            _ = try hypervisors.endpoint(hypervisor)
        } catch {
            throw RequestRefused("\(error)")
        }
        let repository = self.repository
        let (manifest, metadata, disks) = try await restoredBackup(request)
        guard let source = metadata?.libvirt else {
            throw RequestRefused("backup \(request.backupId) was not taken from libvirt, so it has no domain to define: restore it to files")
        }
        let domain = name ?? source.domain
        var files: [String: String] = [:], formats: [String: String] = [:]
        for disk in disks {
            let format = source.diskFormats[disk] == "raw" ? "raw" : "qcow2"
            let directory = storageDirectory ?? ((source.diskFiles[disk] ?? "/var/lib/libvirt/images/x") as NSString).deletingLastPathComponent
            files[disk] = "\(directory)/\(domain)-\(disk).\(format)"
            formats[disk] = format
        }
        let strategy = LibvirtStrategy(repository: repository, hypervisors: hypervisors, clusters: clusters, rangeBytes: settings.rangeBytes,
                                       logger: Logger(label: "lifeboat.planner"))
        let paths = files.values.sorted()
        let conflict: String?
        do {
            conflict = try await runBlocking { () -> String? in
                let target = try strategy.connect(hypervisor)
                if (try? target.domain(domain, inactive: true)) != nil { return "a domain named \(domain) already exists on \(hypervisor)" }
                if let existing = try paths.first(where: { try target.fileExists($0) }) { return "\(existing) already exists on \(hypervisor)" }
                return nil
            }
        } catch let failure as PermanentFailure {
            throw RequestRefused(failure.description)
        }
        if let conflict { throw RequestRefused("\(conflict): restore under another name (target.name) or into another storageDirectory") }
        let plan = RestorePlan(backupId: request.backupId, disks: disks,
                               libvirt: LibvirtRestoreTarget(hypervisor: hypervisor, domain: domain, files: files, formats: formats, start: start),
                               diskSizes: Dictionary(uniqueKeysWithValues: manifest.disks.map { ($0.name, $0.size) }), rangeBytes: restoreStep,
                               dataRanges: try await rangesWithData(request.backupId, disks: disks))
        return [.result(JobResult(job: job, status: .accepted, backupId: request.backupId, details: ["hypervisor": hypervisor, "domain": domain]))]
            + plan.tasks(job).map { .task($0) }
    }
}

extension JobPlanner {
    /// vProtect's rule, checked against Keystone (never taken from the message): the user who
    /// asks for a restore must be a member of the backup's project and, for a restore as a new
    /// instance, of the target project. Without OpenStack configured there is no one to ask,
    /// and the worker's own access rules (restore directories, hypervisors) are all that apply.
    func checkMembership(_ request: RestoreRequest) async throws {
        guard let inventory else { return }
        var projects = [request.project]
        if case .instance(let target, _, _, _, _, _) = request.target, target != request.project { projects.append(target) }
        let user = request.requestedBy.userId
        for project in projects where try await !runBlocking({ try inventory.session.isMember(user: user, ofProject: project) }) {
            throw RequestRefused("user \(user) is not a member of project \(project): the restore is not allowed")
        }
    }

    /// A request that names only the instance: Nova says where the server runs (its compute
    /// host, which must be a configured hypervisor, and its libvirt domain), and the libvirt
    /// strategy takes it from there (its RBD disks through Ceph). A server Nova does not know,
    /// or of another project, is refused; Nova or Keystone not answering returns the request
    /// to its queue.
    func planServerBackup(_ request: BackupRequest, job: JobReference) async throws -> [OutgoingMessage] {
        guard let inventory else {
            throw RequestRefused("the request names no source and OpenStack is not configured on this worker (LIFEBOAT_OPENSTACK_CLOUD): "
                                 + "it cannot resolve instance \(request.instance)")
        }
        guard let server = try await runBlocking({ try inventory.server(request.instance) }) else {
            throw RequestRefused("Nova has no server \(request.instance)")
        }
        guard server.projectID == nil || server.projectID == request.project else {
            throw RequestRefused("server \(request.instance) is not in project \(request.project)")
        }
        let attached = try await runBlocking { try attachedVolumes(of: server, inventory: inventory) }
        if let attached, attached.allDisks {
            return try await planAttachmentBackup(request, job: job, disks: attached.disks, server: server.id)
        }
        guard let host = server.host, let domain = server.instanceName else {
            throw RequestRefused("Nova does not say where server \(request.instance) runs (status \(server.status)): it has no host or instance name yet")
        }
        guard let hypervisor = OpenStackInventory.hypervisorEntry(host: host, hypervisorHostname: server.hypervisorHostname, in: hypervisors) else {
            throw RequestRefused("server \(request.instance) runs on compute host \(host), which is not in LIFEBOAT_HYPERVISORS "
                                 + "(name the entry after the host)")
        }
        return try await planLibvirtBackup(request, job: job, hypervisor: hypervisor, domain: domain, disks: nil, attached: attached?.disks)
    }

    /// The server's volumes that are read by disk attachment (those on backends the worker
    /// reads that way, named as Nova names their devices), and whether they are all its disks:
    /// then the job needs no hypervisor of the server's own. Nil when there are none; the
    /// libvirt strategy then reads every disk on the server's hypervisor.
    func attachedVolumes(of server: Server, inventory: OpenStackInventory) throws -> (disks: [CinderDisk], allDisks: Bool)? {
        guard settings.attachmentProxy != nil, !settings.attachmentBackends.isEmpty, !server.attachedVolumes.isEmpty else { return nil }
        let cinder = try CinderClient(session: inventory.session)
        let volumes = try server.attachedVolumes.map { try cinder.volume($0.id) }
        let chosen = volumes.filter(settings.readsByAttachment)
        guard !chosen.isEmpty else { return nil }
        let ownDisks = !(server.imageID ?? "").isEmpty || (server.flavor.ephemeral ?? 0) > 0 || (server.flavor.swap ?? 0) > 0
        let attachments = try NovaClient(session: inventory.session).volumeAttachments(ofServer: server.id)
        let disks = try chosen.map { volume in
            guard let device = attachments.first(where: { $0.volumeID == volume.id })?.device else {
                throw RequestRefused("Nova names no device for volume \(volume.id) of server \(server.id)")
            }
            return CinderDisk(name: (device as NSString).lastPathComponent, volume: volume.id)
        }
        return (disks, !ownDisks && chosen.count == volumes.count)
    }

    /// A disk-attachment backup starts with its snapshot task (Cinder snapshots, and volumes
    /// made from them); the volumes are checked to exist and to be in the request's project.
    func planAttachmentBackup(_ request: BackupRequest, job: JobReference, disks: [CinderDisk], server: String?) async throws -> [OutgoingMessage] {
        guard let inventory else {
            throw RequestRefused("disk attachment needs OpenStack, which is not configured on this worker (LIFEBOAT_OPENSTACK_CLOUD)")
        }
        guard let proxy = settings.attachmentProxy else {
            throw RequestRefused("disk attachment needs a proxy server to attach volumes to, and this worker has none (LIFEBOAT_ATTACHMENT_PROXY)")
        }
        let backupId = job.jobId
        if let replayed = try await replayed(job) { return replayed }
        let problem = try await runBlocking { () -> String? in
            let cinder = try CinderClient(session: inventory.session)
            for disk in disks {
                let volume: Volume
                do {
                    volume = try cinder.volume(disk.volume)
                } catch let error as HTTPError where error.statusCode == 404 {
                    return "disk \(disk.name): Cinder has no volume \(disk.volume)"
                }
                if let project = volume.projectID, project != request.project { return "volume \(disk.volume) is not in project \(request.project)" }
            }
            return nil
        }
        if let problem { throw RequestRefused(problem) }
        let order = AttachmentOrder(backupId: backupId, proxyServer: proxy, volumes: disks.map { AttachedVolume(disk: $0.name, volumeID: $0.volume) },
                                    mode: request.mode, plannedAt: Date().timeIntervalSince1970, server: server)
        return [.result(JobResult(job: job, status: .accepted, backupId: backupId,
                                  details: ["strategy": "attachment", "proxyServer": proxy,
                                            "volumes": disks.map(\.volume).joined(separator: ", ")])),
                .task(TaskEvent(taskId: "\(job.jobId).snapshot", job: job, kind: .snapshot, parameters: TaskEvent.parameters(order)))]
    }

    /// An RBD backup starts with its snapshot task; the cluster is only touched there (with
    /// retries), so planning never waits on Ceph. A worker without the cluster configured
    /// refuses the request at once.
    func planRBDBackup(_ request: BackupRequest, job: JobReference, cluster: String, disks: [RBDDisk]) async throws -> [OutgoingMessage] {
        do {
            _ = try clusters.entry(cluster)
        } catch {
            throw RequestRefused(error.description)
        }
        let backupId = job.jobId
        if let replayed = try await replayed(job) { return replayed }
        let order = RBDSnapshotOrder(backupId: backupId, cluster: cluster, disks: disks, mode: request.mode, plannedAt: Date().timeIntervalSince1970)
        return [.result(JobResult(job: job, status: .accepted, backupId: backupId,
                                  details: ["cluster": cluster, "images": disks.map { "\($0.pool)/\($0.image)" }.joined(separator: ", ")])),
                .task(TaskEvent(taskId: "\(job.jobId).snapshot", job: job, kind: .snapshot, parameters: TaskEvent.parameters(order)))]
    }

    /// A restore into RBD images: each disk becomes `<prefix><image>` in `pool` (the image it
    /// was backed up from, or the disk's name). New images must not exist yet; with
    /// `overwrite`, an existing one is written over (and one that is missing is created).
    func planRBDRestore(_ request: RestoreRequest, job: JobReference, cluster: String, pool: String, prefix: String?,
                        overwrite: Bool) async throws -> [OutgoingMessage] {
        do {
            _ = try clusters.entry(cluster)
        } catch {
            throw RequestRefused(error.description)
        }
        let repository = self.repository
        let (manifest, metadata, disks) = try await restoredBackup(request)
        let source = metadata?.rbd
        let stem = prefix ?? (overwrite ? "" : "\(request.backupId)-")
        let images = Dictionary(uniqueKeysWithValues: disks.map { ($0, stem + (source?.images[$0]?.image ?? $0)) })
        let strategy = RBDStrategy(repository: repository, clusters: clusters, rangeBytes: settings.rangeBytes, logger: Logger(label: "lifeboat.planner"))
        if !overwrite {
            let existing: [String]
            do {
                existing = try await runBlocking {
                    let target = try strategy.connect(cluster).pool(pool)
                    return try images.values.sorted().filter { try target.imageExists($0) }
                }
            } catch let failure as PermanentFailure {
                throw RequestRefused(failure.description)
            } catch {
                throw RequestRefused("cluster \(cluster), pool \(pool): \(error)")
            }
            if !existing.isEmpty {
                throw RequestRefused("\(existing.map { "\(pool)/\($0)" }.joined(separator: ", ")) already exists: restore with another imagePrefix, "
                                     + "or set overwrite to write over it")
            }
        }
        let plan = RestorePlan(backupId: request.backupId, disks: disks,
                               rbd: RBDRestoreTarget(cluster: cluster, pool: pool, images: images, overwrite: overwrite),
                               diskSizes: Dictionary(uniqueKeysWithValues: manifest.disks.map { ($0.name, $0.size) }), rangeBytes: restoreStep,
                               dataRanges: try await overwrite ? nil : rangesWithData(request.backupId, disks: disks))
        return [.result(JobResult(job: job, status: .accepted, backupId: request.backupId,
                                  details: ["cluster": cluster, "images": images.values.sorted().map { "\(pool)/\($0)" }.joined(separator: ", ")]))]
            + plan.tasks(job).map { .task($0) }
    }
}

extension JobPlanner {
    /// A restore as a new Nova server in `project` (the requester's membership there was
    /// checked): the backup must hold a saved instance, and the flavor (the one asked for, or
    /// the saved one by id, then by name) must exist. Then a `provision` task makes the volumes.
    /// The root disk is the instance's first (the domain's first disk, its boot disk).
    func planInstanceRestore(_ request: RestoreRequest, job: JobReference, project: String, name: String?, flavor: String?,
                             networks: [String]?, keypair: String?, disksAs: RestoreTarget.InstanceDisks) async throws -> [OutgoingMessage] {
        guard let inventory else {
            throw RequestRefused("restoring as a new instance needs OpenStack, which is not configured on this worker (LIFEBOAT_OPENSTACK_CLOUD)")
        }
        let (manifest, metadata, disks) = try await restoredBackup(request)
        guard let metadata, let record = metadata.openstack else {
            throw RequestRefused("backup \(request.backupId) was not taken from a Nova server, so there is no instance to recreate: "
                                 + "restore it to files, a hypervisor or RBD")
        }
        guard let root = metadata.disks.first(where: disks.contains) else { throw RequestRefused("the restore names no disk") }
        let flavors = try await runBlocking { try NovaClient(session: inventory.session).flavors() }
        let chosen: Flavor?
        if let flavor {
            chosen = flavors.first { $0.id == flavor } ?? flavors.first { $0.name == flavor }
        } else {
            let savedName = record.flavor?.name ?? record.server.flavor.originalName
            chosen = flavors.first { $0.id == (record.flavor?.id ?? record.server.flavor.id) } ?? flavors.first { $0.name == savedName }
        }
        guard let chosen else {
            throw RequestRefused("flavor \(flavor ?? record.flavor?.name ?? record.server.flavor.originalName ?? "?") does not exist: name one of "
                                 + flavors.map(\.name).sorted().joined(separator: ", "))
        }
        let target = InstanceRestoreTarget(project: project, name: name ?? record.server.name, flavorID: chosen.id, networks: networks,
                                           keypair: keypair, rootDisk: root, requestedBy: request.requestedBy.userId, disksAs: disksAs)
        let sizes = Dictionary(uniqueKeysWithValues: manifest.disks.map { ($0.name, $0.size) })
        // An image is uploaded in one request: one task per disk.
        let step = disksAs == .images ? max(1, disks.compactMap { sizes[$0] }.max() ?? 1) : restoreStep
        let plan = RestorePlan(backupId: request.backupId, disks: disks, instance: target, diskSizes: sizes, rangeBytes: step)
        return [.result(JobResult(job: job, status: .accepted, backupId: request.backupId,
                                  details: ["project": project, "server": target.name, "flavor": chosen.name, "rootDisk": root,
                                            "disksAs": disksAs.rawValue])),
                .task(TaskEvent(taskId: "\(job.jobId).provision", job: job, kind: .provision, parameters: TaskEvent.parameters(plan)))]
    }
}

extension JobPlanner {
    /// Cancels a running backup: its staging goes (so its remaining tasks find it gone and
    /// stop without retrying), and `cancelled` is reported under the job's id. Its chunks stay
    /// for GC, or for the next backup to reuse.
    func planCancel(_ request: CancelRequest, job: JobReference) async throws -> [OutgoingMessage] {
        let repository = self.repository
        let id = request.jobId
        let (committed, begun) = try await runBlocking { (try repository.isCommitted(id), try repository.isBegun(id)) }
        if committed { throw RequestRefused("job \(id) has already completed: backup \(id) exists (prune it if it is not wanted)") }
        guard begun else { throw RequestRefused("there is no running backup job \(id) (restores cannot be cancelled yet)") }
        try await runBlocking { try repository.abandonBackup(id) }
        return [.result(JobResult(job: job, status: .cancelled, backupId: id, details: ["cancelledBy": request.requestId]))]
    }
}

extension JobPlanner {
    /// Whether `path`, with its symbolic links resolved as far as it exists, lies inside one of
    /// `roots` (resolved likewise): `..` and links cannot lead out.
    static func isInside(_ path: String, _ roots: [String]) -> Bool {
        let resolved = resolve(path)
        return roots.contains { root in
            let base = resolve(root)
            return resolved == base || resolved.hasPrefix(base.hasSuffix("/") ? base : base + "/")
        }
    }

    /// The real path of the longest existing prefix of `path`, with the rest appended.
    private static func resolve(_ path: String) -> String {
        var existing = URL(fileURLWithPath: path).standardized.path
        var rest: [String] = []
        while !existing.isEmpty, existing != "/", realpath(existing, nil) == nil {
            rest.insert((existing as NSString).lastPathComponent, at: 0)
            existing = (existing as NSString).deletingLastPathComponent
        }
        guard let real = realpath(existing, nil) else { return path }
        defer { free(real) }
        return ([String(cString: real)] + rest).joined(separator: "/").replacingOccurrences(of: "//", with: "/")
    }
}

/// The newest committed backup of `instance`, the parent of its next incremental.
func latestBackup(of instance: String, in repository: Repository) throws -> String? {
    try repository.listBackups()
        .filter { (try? JSONDecoder().decode(BackupMetadata.self, from: $0.metadata))?.instance == instance }
        .max { $0.createdAt < $1.createdAt }?.id
}
