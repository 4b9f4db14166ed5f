import AMQP
import Ceph
import Events
import Foundation
import Libvirt
import Logging
import Publisher
import Repository
import SSH

/// The libvirt strategy: a domain's disk files on a KVM hypervisor, reached over SSH.
///
/// Backup: the `snapshot` task takes an external disk-only snapshot (one new overlay per disk,
/// named after the backup), which freezes the files below; `transfer` tasks read the frozen
/// chain's guest view range by range; `finalize` commits; `cleanup` merges the overlay that
/// the previous backup left into its base, so exactly one Lifeboat overlay remains: the one
/// whose own clusters will be the next incremental. An incremental is possible when the disk's
/// frozen top is the overlay named after a committed backup (its parent); otherwise the backup
/// is a full and says why. A failed or cancelled job's overlay is merged back (`rollback`).
///
/// RBD disks of the domain (Cinder volumes, Nova disks on Ceph) are the Ceph strategy's: when
/// the hypervisor names its `cephCluster`, they are snapshotted right after the file disks, under
/// the same hooks, and read through librbd in the same job (`BackupPlan.rbd`).
///
/// Restore: each disk's file is written on the target hypervisor (sparse, raw or qcow2), then
/// the saved domain XML is rewritten for the new files (and name) and defined, and started
/// on request.
struct LibvirtStrategy: Sendable {
    let repository: Repository
    let hypervisors: HypervisorDirectory
    let rangeBytes: UInt64
    let logger: Logger
    /// For the domains' RBD disks.
    let rbd: RBDStrategy
    /// For the metadata of domains that are Nova servers.
    let inventory: OpenStackInventory?
    /// For the disks that are Cinder volumes read by disk attachment.
    let volumeCopies: VolumeCopies

    init(repository: Repository, hypervisors: HypervisorDirectory, clusters: CephClusterDirectory = CephClusterDirectory(),
         inventory: OpenStackInventory? = nil, rangeBytes: UInt64, logger: Logger) {
        self.repository = repository
        self.hypervisors = hypervisors
        self.inventory = inventory
        self.volumeCopies = VolumeCopies(inventory: inventory)
        self.rangeBytes = rangeBytes
        self.logger = logger
        self.rbd = RBDStrategy(repository: repository, clusters: clusters, rangeBytes: rangeBytes, logger: logger)
    }

    /// The suffix of the overlay a backup's snapshot creates: `<stem>.lifeboat-<backup>.qcow2`.
    static func overlayPath(for file: String, backup: String) -> String {
        let directory = (file as NSString).deletingLastPathComponent
        return "\(directory)/\(overlayStem(file)).lifeboat-\(backup).qcow2"
    }

    /// The backup an overlay file was made for, if it is one of Lifeboat's.
    static func overlayBackup(_ file: String) -> String? {
        let name = (file as NSString).lastPathComponent
        guard name.hasSuffix(".qcow2"), !name.contains(".lifeboat-push-"), let marker = name.range(of: ".lifeboat-", options: .backwards) else { return nil }
        let backup = name[marker.upperBound..<name.index(name.endIndex, offsetBy: -".qcow2".count)]
        return backup.isEmpty ? nil : String(backup)
    }

    private static func overlayStem(_ file: String) -> String {
        let name = (file as NSString).lastPathComponent
        if overlayBackup(file) != nil, let marker = name.range(of: ".lifeboat-", options: .backwards) { return String(name[..<marker.lowerBound]) }
        return name
    }

    /// Logs in to a hypervisor. A refused host key, failed login or unknown name will not get
    /// better by retrying: those fail the job at once, with the reason.
    func connect(_ name: String) throws -> Hypervisor {
        do {
            return try hypervisors.connect(name)
        } catch let error as SSHError {
            switch error {
            case .hostKeyChanged, .hostKeyUnknown, .authenticationFailed: throw PermanentFailure("hypervisor \(name): \(error)")
            default: throw error
            }
        } catch let error as HypervisorDirectoryError {
            throw PermanentFailure(error.description)
        }
    }

    // MARK: - Backup

    func snapshot(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let order = try task.parameters(as: LibvirtSnapshotOrder.self)
        let (plan, details) = try await runBlocking { try self.takeSnapshot(order) }
        let ranges = plan.transferTasks(task.job, step: step).map { OutgoingMessage.task($0) }
        return [.result(JobResult(job: task.job, status: .started, task: TaskSummary(taskId: task.taskId, kind: .snapshot),
                                  backupId: plan.backupId, details: details))] + ranges
    }

    /// Snapshot (unless this job's overlays are already there: a redelivered task never takes a
    /// second one), then decide full or incremental and begin the backup.
    private func takeSnapshot(_ order: LibvirtSnapshotOrder) throws -> (BackupPlan, [String: String]) {
        let hypervisor = try connect(order.hypervisor)
        let live = try hypervisor.domain(order.domain)
        let (disks, rbdDisks) = try selectedDisks(live, order: order)
        let running = try hypervisor.isRunning(order.domain)
        // The RBD disks' snapshots and the attached volumes' Cinder snapshots, taken right after
        // the files are frozen (under the same hooks).
        let ceph = try rbdDisks.isEmpty ? nil : cephCluster(for: order)
        var snapshotted: RBDStrategy.SnapshottedImages = [:]
        var attached = order.attachedVolumes ?? []
        let snapshotRBD = {
            if let ceph { snapshotted = try rbd.snapshotImages(ceph, disks: rbdDisks, backupId: order.backupId) }
            if !attached.isEmpty { attached = try volumeCopies.snapshot(backup: order.backupId, attached) }
        }
        let freeze: Freeze
        if !running {
            // Shut off: nothing writes the files, which are read as they are.
            freeze = Freeze(frozen: Dictionary(uniqueKeysWithValues: disks.map { ($0.target, $0.path) }), consistency: "shut-off")
            try snapshotRBD()
        } else if disks.isEmpty {
            try withHooks(hypervisor, order: order, snapshotRBD)
            freeze = Freeze(frozen: [:], consistency: "crash-consistent")
        } else if hypervisors.entries[order.hypervisor]?.changedBlocks == "bitmap" {
            freeze = try freezeWithBitmaps(hypervisor, order: order, disks: disks, then: snapshotRBD)
        } else {
            freeze = try freezeWithOverlay(hypervisor, order: order, disks: disks, live: live, then: snapshotRBD)
        }
        let frozen = freeze.frozen, overlays = freeze.overlays, consistency = freeze.consistency

        var planned: [BackupPlan.Disk] = []
        var originals: (files: [String: String], formats: [String: String]) = ([:], [:])
        for disk in disks {
            let path = frozen[disk.target]!
            let chain = try hypervisor.chain(of: path)
            planned.append(BackupPlan.Disk(name: disk.target, path: path, size: chain.virtualSize, chain: chain))
            let original = chain.layers.first { Self.overlayBackup($0.path) == nil } ?? chain.layers[chain.layers.count - 1]
            originals.files[disk.target] = original.path
            originals.formats[disk.target] = original.format
        }
        var details = ["hypervisor": order.hypervisor, "domain": order.domain, "consistency": consistency,
                       "changedBlocks": freeze.checkpoint == nil ? "overlay" : "bitmap"]
        var parent: String?
        if let checkpoint = freeze.checkpoint {
            parent = checkpoint.since
            if order.mode == .incremental, let reason = checkpoint.fallback { details["fallback"] = "full: \(reason)" }
        } else if order.mode == .incremental, !planned.isEmpty {
            switch try incrementalParent(planned) {
            case .success(let found): parent = found
            case .failure(let reason): details["fallback"] = "full: \(reason.description)"
            }
        }
        // The RBD disks continue the same parent, or the whole backup is a full.
        if let ceph, order.mode == .incremental, planned.isEmpty || parent != nil {
            switch try rbd.incrementalParent(cluster: ceph.name, disks: rbdDisks, backupId: order.backupId, instance: order.instance ?? order.domain,
                                             images: snapshotted) {
            case .success(let found) where planned.isEmpty || found == parent: parent = found
            case .success(let found): (parent, details["fallback"]) = (nil, "full: the RBD disks continue backup \(found), the files \(parent ?? "none")")
            case .failure(let reason): (parent, details["fallback"]) = (nil, "full: \(reason.description)")
            }
        }
        if parent != nil {
            for i in planned.indices { planned[i].changesOnly = true }
        }
        var rbdSource: RBDSource?
        if let ceph {
            let images = try rbd.planImages(ceph, disks: rbdDisks, images: snapshotted, backupId: order.backupId, parent: parent)
            planned += images.disks
            rbdSource = images.source
        }
        // The attached volumes' copies, attached to the proxy and read whole there.
        var attachment: AttachmentSource?
        if !attached.isEmpty {
            guard let proxyServer = order.proxyServer else { throw PermanentFailure("the order names volumes to attach but no proxy server") }
            attached = try volumeCopies.clone(backup: order.backupId, attached)
            let (source, disks) = try attachedDisks(attached, proxy: try volumeCopies.attach(attached, to: proxyServer))
            planned += disks
            attachment = source
            details["attached"] = attached.map { "\($0.disk): \($0.volumeID)" }.joined(separator: ", ")
        }
        details["parent"] = parent ?? "none"
        try repository.beginBackup(order.backupId, parent: parent)
        let source = LibvirtSource(
            hypervisor: order.hypervisor, domain: order.domain, hostname: (try? hypervisor.hostname()) ?? order.hypervisor,
            hostKeyFingerprint: hypervisor.hostKeyFingerprint, definition: try hypervisor.domain(order.domain, inactive: true).xml,
            diskFiles: originals.files, diskFormats: originals.formats, overlays: overlays, consistency: consistency,
            pushTargets: freeze.checkpoint.map { _ in frozen }, checkpoint: freeze.checkpoint?.name)
        let ranges = BackupPlan.ranges(planned, step: step)
        // A Nova server's metadata, read after the snapshot (what the frozen disks belong to).
        var record: InstanceRecord?
        if let inventory, let instance = order.instance, let server = try inventory.server(instance) { record = try inventory.record(of: server) }
        if let record { details["flavor"] = record.server.flavor.originalName ?? record.flavor?.name ?? "?" }
        let plan = BackupPlan(backupId: order.backupId, parent: parent, disks: planned, rangeCount: ranges.count,
                              totalBytes: ranges.reduce(0) { $0 + $1.range.length }, plannedAt: order.plannedAt, libvirt: source,
                              rbd: rbdSource, openstack: record, attachment: attachment)
        return (plan, details)
    }

    /// How the disks were frozen: the files to read, and what the job must release later.
    private struct Freeze {
        var frozen: [String: String]
        var overlays: [String: String] = [:]
        var consistency: String
        var checkpoint: (name: String, since: String?, fallback: String?)?
    }

    /// An external disk-only snapshot: one new overlay per disk, named after the backup; the
    /// files below are frozen. A redelivered task finds its overlays and takes no second one.
    private func freezeWithOverlay(_ hypervisor: Hypervisor, order: LibvirtSnapshotOrder, disks: [SelectedDisk],
                                   live: DomainDescription, then alsoFreeze: () throws -> Void) throws -> Freeze {
        var consistency = "crash-consistent"
        let wanted = Dictionary(uniqueKeysWithValues: disks.map { ($0.target, Self.overlayPath(for: $0.path, backup: order.backupId)) })
        if disks.allSatisfy({ $0.path == wanted[$0.target] }) {
            logger.info("snapshot already taken by an earlier attempt", metadata: ["backup": "\(order.backupId)"])
            try alsoFreeze()
        } else {
            let quiesce = hypervisor.guestAgentAnswers(order.domain)
            try withHooks(hypervisor, order: order) {
                let others = live.disks.map(\.target).filter { wanted[$0] == nil }
                try hypervisor.snapshot(order.domain, name: "lifeboat-\(order.backupId)", overlays: wanted, skipping: others, quiesce: quiesce)
                try alsoFreeze()
            }
            if quiesce { consistency = "quiesced" }
        }
        var freeze = Freeze(frozen: [:], consistency: consistency)
        for disk in try selectedDisks(try hypervisor.domain(order.domain), order: order).files {
            guard disk.path == wanted[disk.target], let below = disk.description.backingFiles.first else {
                throw TaskFailure("disk \(disk.target) of \(order.domain) is not on the overlay the snapshot made (\(disk.path))")
            }
            freeze.overlays[disk.target] = disk.path
            freeze.frozen[disk.target] = below
        }
        return freeze
    }

    /// A push-mode backup with a new checkpoint (dirty bitmap): QEMU copies the disks as of
    /// this instant into scratch qcow2 files beside them (for an incremental, only what was
    /// written since the previous backup's checkpoint), and the domain's chain is left alone.
    /// A redelivered task finds its checkpoint and only waits for the copy.
    private func freezeWithBitmaps(_ hypervisor: Hypervisor, order: LibvirtSnapshotOrder, disks: [SelectedDisk],
                                   then alsoFreeze: () throws -> Void) throws -> Freeze {
        if let raw = disks.first(where: { $0.description.format != "qcow2" }) {
            throw PermanentFailure("disk \(raw.target) of \(order.domain) is \(raw.description.format): dirty bitmaps need qcow2 disks "
                                   + "(set changedBlocks to overlay for hypervisor \(order.hypervisor))")
        }
        let name = "lifeboat-\(order.backupId)"
        let targets = Dictionary(uniqueKeysWithValues: disks.map { ($0.target, Self.pushTarget(for: $0.path, backup: order.backupId)) })
        let checkpoints = try hypervisor.checkpoints(order.domain)
        var since: String?
        var fallback: String? = "no checkpoint of an earlier Lifeboat backup on this domain"
        for candidate in checkpoints.reversed() where candidate.hasPrefix("lifeboat-") && candidate != name {
            let backup = String(candidate.dropFirst("lifeboat-".count))
            guard try repository.isCommitted(backup) else {
                fallback = "backup \(backup), whose checkpoint the domain keeps, is not in the repository (pruned or failed)"
                continue
            }
            let manifest = try repository.manifest(backup)
            if let changed = try disks.first(where: { disk in manifest.disks.first { $0.name == disk.target }?.size != (try hypervisor.chain(of: disk.path)).virtualSize }) {
                fallback = "disk \(changed.target) is new or changed size since backup \(backup)"
                continue
            }
            since = backup
            fallback = nil
            break
        }
        if order.mode == .full { since = nil }
        var consistency = "crash-consistent"
        if !checkpoints.contains(name) {
            _ = try? hypervisor.run(["rm", "-f"] + targets.values.sorted())  // an earlier attempt's partial copy
            let quiesce = hypervisor.guestAgentAnswers(order.domain)
            try withHooks(hypervisor, order: order) {
                if quiesce { try hypervisor.virsh(["domfsfreeze", "--", order.domain]) }
                defer { if quiesce { _ = try? hypervisor.virsh(["domfsthaw", "--", order.domain]) } }
                try hypervisor.beginPushBackup(order.domain, targets: targets, since: since.map { "lifeboat-\($0)" }, checkpoint: name)
                try alsoFreeze()
            }
            if quiesce { consistency = "quiesced" }
        } else {
            logger.info("push backup already begun by an earlier attempt", metadata: ["backup": "\(order.backupId)"])
            try alsoFreeze()
        }
        try hypervisor.waitForJob(order.domain)
        return Freeze(frozen: targets, consistency: consistency, checkpoint: (name, since, fallback))
    }

    /// Runs the operator's pre- and post-snapshot commands around `body`: the hypervisor's,
    /// then the guest's (inside it, over SSH); post commands in the reverse order, always.
    /// A failed pre command fails the task (it is retried); a failed post command is logged.
    private func withHooks(_ hypervisor: Hypervisor, order: LibvirtSnapshotOrder, _ body: () throws -> Void) throws {
        let entry = hypervisors.entries[order.hypervisor]
        if let command = entry?.preSnapshotCommand { try hypervisor.runHook(command, domain: order.domain) }
        defer { if let command = entry?.postSnapshotCommand { try? hypervisor.runHook(command, domain: order.domain) } }
        do {
            try hypervisors.runInGuest(order.domain, \.preSnapshotCommand)
        } catch {
            throw TaskFailure("the pre-snapshot command in guest \(order.domain) failed: \(error)")
        }
        defer {
            do {
                try hypervisors.runInGuest(order.domain, \.postSnapshotCommand)
            } catch {
                logger.error("post-snapshot command in the guest failed", metadata: ["domain": "\(order.domain)", "error": "\(error)"])
            }
        }
        try body()
    }

    /// The scratch file a push backup of `file` writes: `<file>.lifeboat-push-<backup>.qcow2`.
    static func pushTarget(for file: String, backup: String) -> String { "\(file).lifeboat-push-\(backup).qcow2" }

    private struct SelectedDisk {
        var description: DomainDescription.Disk
        var target: String { description.target }
        var path: String
    }

    /// The disks to back up: image files on the hypervisor, and RBD images (read through Ceph).
    private func selectedDisks(_ domain: DomainDescription, order: LibvirtSnapshotOrder) throws -> (files: [SelectedDisk], rbd: [RBDDisk]) {
        let names = domain.disks.map(\.target)
        if let unknown = order.disks?.first(where: { !names.contains($0) }) {
            throw PermanentFailure("domain \(order.domain) has no disk \(unknown) (it has \(names.joined(separator: ", ")))")
        }
        var files: [SelectedDisk] = [], rbd: [RBDDisk] = []
        // Volumes read by disk attachment, known by their serial (the volume id) or name.
        let attached = Set((order.attachedVolumes ?? []).flatMap { [$0.disk, $0.volumeID] })
        for disk in domain.disks where order.disks?.contains(disk.target) ?? true
            && !attached.contains(disk.target) && !attached.contains(disk.serial ?? "") {
            switch disk.backing {
            case .file(let path) where !path.isEmpty:
                files.append(SelectedDisk(description: disk, path: path))
            case .rbd(let name):
                let parts = name.split(separator: "/", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw PermanentFailure("disk \(disk.target) of \(order.domain): RBD source \(name) is not pool/image") }
                rbd.append(RBDDisk(name: disk.target, pool: parts[0], image: parts[1]))
            default:
                throw PermanentFailure("disk \(disk.target) of \(order.domain) is not an image file (\(disk.backing)): not supported")
            }
        }
        return (files, rbd)
    }

    /// The Ceph cluster the hypervisor's RBD disks live on, connected.
    private func cephCluster(for order: LibvirtSnapshotOrder) throws -> RadosCluster {
        guard let name = hypervisors.entries[order.hypervisor]?.cephCluster else {
            throw PermanentFailure("domain \(order.domain) has RBD disks, but hypervisor \(order.hypervisor) names no cephCluster "
                                   + "(LIFEBOAT_HYPERVISORS) to read them from; name the other disks in \"disks\" to leave them out")
        }
        return try rbd.connect(name)
    }

    /// The committed backup whose overlay is every disk's frozen top, if there is one and it
    /// holds each disk at the same size.
    private func incrementalParent(_ disks: [BackupPlan.Disk]) throws -> Result<String, PermanentFailure> {
        let owners = Set(disks.map { Self.overlayBackup($0.path) })
        guard owners.count == 1, let owner = owners.first, let backup = owner else {
            return .failure(PermanentFailure("no overlay of an earlier Lifeboat backup on every disk (first backup, or the overlay was merged)"))
        }
        guard try repository.isCommitted(backup) else {
            return .failure(PermanentFailure("backup \(backup), which the kept overlay continues, is not in the repository (pruned or failed)"))
        }
        let manifest = try repository.manifest(backup)
        for disk in disks where manifest.disks.first(where: { $0.name == disk.name })?.size != disk.size {
            return .failure(PermanentFailure("disk \(disk.name) is new or changed size since backup \(backup)"))
        }
        return .success(backup)
    }

    var step: UInt64 { BackupPlan.step(rangeBytes, chunkSize: repository.chunkSize) }

    /// Copies one range of a frozen disk from the hypervisor into the repository. When the read
    /// fails because the domain is gone (deleted mid-backup), the job fails at once.
    func transfer(_ plan: BackupPlan, source: LibvirtSource, disk: BackupPlan.Disk, range: ByteRange) throws {
        try transfer(plan, hypervisor: source.hypervisor, domain: source.domain, disk: disk, range: range)
    }

    /// Copies one range of `disk`, an image (chain) on `hypervisor` that domain `domain` uses;
    /// also how disk attachment reads the volumes attached to its proxy server.
    func transfer(_ plan: BackupPlan, hypervisor name: String, domain: String, disk: BackupPlan.Disk, range: ByteRange) throws {
        guard let chain = disk.chain else { throw TaskFailure("disk \(disk.name) has no image chain in its plan") }
        let started = ContinuousClock.now
        let hypervisor = try connect(name)
        let connected = ContinuousClock.now
        let changesOnly = disk.changesOnly ?? false
        let reader = RemoteImageSource(shell: hypervisor.shell, host: name, chain: chain, selection: changesOnly ? .topLayer : .allData,
                                       fastPathAddress: hypervisor.fastPathAddress)
        do {
            try repository.backupRange(streaming: reader, extents: changesOnly ? .changesSinceParent : .dataElsewhereZero,
                                       backup: plan.backupId, disk: disk.name, offset: range.offset, length: range.length)
        } catch RepositoryError.backupNotBegun {
            throw RepositoryError.backupNotBegun(plan.backupId)
        } catch {
            if case LibvirtError.domainNotFound? = Result(catching: { try hypervisor.domain(domain) }).failure {
                throw PermanentFailure("domain \(domain) was deleted from \(name) during the backup (\(error))")
            }
            throw error
        }
        WorkerMetrics.sourceBytes(reader.bytesTransferred, strategy: "libvirt")
        logger.debug("range read", metadata: ["disk": "\(disk.name)", "offset": "\(range.offset)", "bytes": "\(reader.bytesTransferred)",
                                              "login": "\(started.duration(to: connected))", "read": "\(connected.duration(to: .now))"])
    }

    /// After the commit: merge the overlay the previous backup kept (now frozen under this
    /// backup's overlay) into the file below it. Idempotent: a disk whose chain no longer
    /// holds that overlay is done.
    func cleanup(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let plan = try task.parameters(as: BackupPlan.self)
        guard let source = plan.libvirt else { throw TaskFailure("cleanup task \(task.taskId) has no libvirt source") }
        let removedSnapshots = try await runBlocking { try plan.rbd.map { try rbd.releaseOlderSnapshots($0) } ?? [] }
        let merged = try await runBlocking { () -> [String] in
            if let checkpoint = source.checkpoint {
                try releaseBitmapBackup(source, keeping: checkpoint)
                return []
            }
            guard !source.overlays.isEmpty else { return [] }
            let hypervisor = try connect(source.hypervisor)
            let live: DomainDescription
            do {
                live = try hypervisor.domain(source.domain)
            } catch LibvirtError.domainNotFound {
                return []
            }
            var merged: [String] = []
            for disk in plan.disks where Self.overlayBackup(disk.path) != nil {
                guard let current = live.disks.first(where: { $0.target == disk.name }),
                      let at = current.backingFiles.firstIndex(of: disk.path), at + 1 < current.backingFiles.count else { continue }
                try hypervisor.commit(source.domain, disk: disk.name, top: disk.path, base: current.backingFiles[at + 1])
                merged.append("\(disk.name): \(disk.path)")
            }
            return merged
        }
        let manifest = try await runBlocking { try repository.manifest(plan.backupId) }
        var details = ["parent": plan.parent ?? "none", "bytes": "\(plan.totalBytes)",
                       "newStoredBytes": "\(manifest.disks.reduce(UInt64(0)) { $0 + $1.newStoredBytes })",
                       "consistency": source.consistency]
        if !merged.isEmpty { details["merged"] = merged.joined(separator: ", ") }
        if !source.overlays.isEmpty { details["kept"] = source.overlays.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") }
        if let checkpoint = source.checkpoint { details["kept"] = "checkpoint \(checkpoint)" }
        if let images = plan.rbd?.images.sorted(by: { $0.key < $1.key }) {
            details["kept"] = ([details["kept"]].compactMap { $0 } + images.map { "\($0.key): \($0.value.pool)/\($0.value.image)@\($0.value.snapshot)" })
                .joined(separator: ", ")
        }
        if !removedSnapshots.isEmpty { details["removed"] = removedSnapshots.joined(separator: ", ") }
        if let attachment = plan.attachment {
            try await runBlocking { try volumeCopies.release(attachment.release(backupId: plan.backupId)) }
            details["released"] = attachment.volumes.values.map(\.volumeID).sorted().joined(separator: ", ")
        }
        return [.result(JobResult(job: task.job, status: .succeeded, backupId: plan.backupId, details: details))]
    }

    /// After a bitmap backup: the scratch copies go, and so do Lifeboat's older checkpoints
    /// (their bitmaps merge into the kept one's parent; only `keeping` serves the next one).
    private func releaseBitmapBackup(_ source: LibvirtSource, keeping checkpoint: String) throws {
        let hypervisor = try connect(source.hypervisor)
        if let targets = source.pushTargets, !targets.isEmpty { try hypervisor.run(["rm", "-f"] + targets.values.sorted()) }
        let all: [String]
        do {
            all = try hypervisor.checkpoints(source.domain)
        } catch LibvirtError.domainNotFound {
            return
        }
        for old in all where old.hasPrefix("lifeboat-") && old != checkpoint {
            try hypervisor.deleteCheckpoint(source.domain, old)
        }
    }

    /// Merges a failed or cancelled backup's overlays back into the files below them, so the
    /// domain's chain is as before the job (and the earlier kept overlay still serves the next
    /// incremental). When the domain is gone, its overlay files are removed.
    func rollback(_ task: TaskEvent) async throws -> [OutgoingMessage] {
        let order = try task.parameters(as: LibvirtRollbackOrder.self)
        if let attachment = order.attachment { try await runBlocking { try volumeCopies.release(attachment) } }
        let undone = try await runBlocking { () -> [String] in
            let hypervisor: Hypervisor
            do {
                hypervisor = try connect(order.hypervisor)
            } catch let refused as PermanentFailure {
                // Refused host key or login: no snapshot can have been taken through it either.
                logger.warning("rollback cannot log in", metadata: ["backup": "\(order.backupId)", "error": "\(refused)"])
                return []
            }
            let live: DomainDescription
            do {
                live = try hypervisor.domain(order.domain)
            } catch LibvirtError.domainNotFound {
                // Deleted with the job running: its overlays are nobody's now.
                if !order.overlays.isEmpty { try hypervisor.run(["rm", "-f"] + order.overlays) }
                try removeRBDSnapshots(order, images: order.rbdImages ?? [])
                return []
            }
            var undone: [String] = []
            let rbdImages = live.disks.compactMap { disk -> String? in
                if case .rbd(let name) = disk.backing { return name }
                return nil
            }
            try removeRBDSnapshots(order, images: Array(Set(rbdImages + (order.rbdImages ?? []))).sorted())
            for disk in live.disks {
                guard case .file(let path) = disk.backing, Self.overlayBackup(path) == order.backupId, let base = disk.backingFiles.first else { continue }
                try hypervisor.commitActive(order.domain, disk: disk.target, base: base)
                undone.append(disk.target)
            }
            // A bitmap backup: stop its copy, remove the scratch files, and delete its checkpoint
            // (its bitmap merges into the previous one, so the next incremental still sees every write).
            let checkpoint = "lifeboat-\(order.backupId)"
            if try hypervisor.checkpoints(order.domain).contains(checkpoint) {
                hypervisor.abortJob(order.domain)
                try hypervisor.deleteCheckpoint(order.domain, checkpoint)
                undone.append(checkpoint)
            }
            let scratch = live.disks.compactMap { disk -> String? in
                guard case .file(let path) = disk.backing else { return nil }
                return Self.pushTarget(for: path, backup: order.backupId)
            }
            if !scratch.isEmpty { try hypervisor.run(["rm", "-f"] + scratch) }
            return undone
        }
        logger.info("snapshot rolled back", metadata: ["backup": "\(order.backupId)", "disks": "\(undone)"])
        return []
    }

    /// A failed or cancelled backup's snapshots of the domain's RBD disks.
    private func removeRBDSnapshots(_ order: LibvirtRollbackOrder, images: [String]) throws {
        guard !images.isEmpty, let cluster = hypervisors.entries[order.hypervisor]?.cephCluster else { return }
        do {
            try rbd.removeSnapshots(of: order.backupId, cluster: cluster, images: images)
        } catch let refused as PermanentFailure {
            logger.warning("rollback cannot reach the Ceph cluster", metadata: ["backup": "\(order.backupId)", "error": "\(refused)"])
        }
    }

    static func rollbackTask(for task: TaskEvent) -> TaskEvent? {
        let order: LibvirtRollbackOrder
        if let snapshot = try? task.parameters(as: LibvirtSnapshotOrder.self) {
            order = LibvirtRollbackOrder(backupId: snapshot.backupId, hypervisor: snapshot.hypervisor, domain: snapshot.domain, overlays: [],
                                         attachment: snapshot.proxyServer.map { proxy in
                                             AttachmentRelease(backupId: snapshot.backupId, proxyServer: proxy,
                                                               disks: (snapshot.attachedVolumes ?? []).map(\.disk))
                                         })
        } else if let plan = try? task.parameters(as: BackupPlan.self), let source = plan.libvirt {
            order = LibvirtRollbackOrder(backupId: plan.backupId, hypervisor: source.hypervisor, domain: source.domain,
                                         overlays: (Array(source.overlays.values) + Array((source.pushTargets ?? [:]).values)).sorted(),
                                         rbdImages: plan.rbd.map { $0.images.values.map { "\($0.pool)/\($0.image)" }.sorted() },
                                         attachment: plan.attachment?.release(backupId: plan.backupId))
        } else {
            return nil
        }
        return TaskEvent(taskId: "\(task.job.jobId).rollback", job: task.job, kind: .cleanup, parameters: TaskEvent.parameters(order))
    }

    // MARK: - Restore

    /// Writes one range of one disk into its partial file on the target hypervisor; the range
    /// task that finds every range of every disk written asks for `restore-finalize`.
    func restore(_ task: TaskEvent, plan: RestorePlan, target: LibvirtRestoreTarget, disk: String, range: ByteRange) async throws -> [OutgoingMessage] {
        guard let path = target.files[disk], target.formats[disk] != nil else { throw TaskFailure("restore task \(task.taskId): no file for \(disk)") }
        let complete = try await runBlocking { () -> Bool in
            let hypervisor = try connect(target.hypervisor)
            func writer(_ disk: String) throws -> RemoteImageWriter {
                try RemoteImageWriter(shell: hypervisor.shell, host: target.hypervisor, path: target.files[disk] ?? "",
                                      format: target.formats[disk] ?? "raw", size: try repository.diskSize(backup: plan.backupId, disk: disk),
                                      job: task.job.jobId)
            }
            let output = try writer(disk)
            if try !output.isComplete() {
                try output.prepare()
                try repository.streamDisk(backup: plan.backupId, disk: disk, offset: range.offset, length: range.length) { try output.write(at: $0, $1) }
                try output.flush()
                try output.markDone(offset: range.offset)
            }
            return try plan.disks.allSatisfy { disk in
                let other = try writer(disk)
                return try other.isComplete() || other.rangesDone() >= plan.rangeCount(of: disk)
            }
        }
        var messages: [OutgoingMessage] = [.result(JobResult(job: task.job, status: .progress,
                                                              task: TaskSummary(taskId: task.taskId, kind: .restore, disk: disk),
                                                              backupId: plan.backupId, details: ["file": path, "hypervisor": target.hypervisor]))]
        if complete {
            messages.append(.task(TaskEvent(taskId: "\(task.job.jobId).restore-finalize", job: task.job, kind: .restoreFinalize,
                                            parameters: task.parameters)))
        }
        return messages
    }

    /// Defines the restored domain (unless an earlier attempt did) and starts it on request.
    func restoreFinalize(_ task: TaskEvent, plan: RestorePlan, target: LibvirtRestoreTarget) async throws -> [OutgoingMessage] {
        let repository = self.repository
        let source = try await runBlocking { () -> LibvirtSource in
            let manifest = try repository.manifest(plan.backupId)
            guard let source = try JSONDecoder().decode(BackupMetadata.self, from: manifest.metadata).libvirt else {
                throw PermanentFailure("backup \(plan.backupId) has no domain definition")
            }
            return source
        }
        let started = try await runBlocking { () -> Bool in
            let hypervisor = try connect(target.hypervisor)
            for disk in plan.disks {
                try RemoteImageWriter(shell: hypervisor.shell, host: target.hypervisor, path: target.files[disk] ?? "",
                                      format: target.formats[disk] ?? "raw", size: try repository.diskSize(backup: plan.backupId, disk: disk),
                                      job: task.job.jobId).complete()
            }
            let defined = (try? hypervisor.domain(target.domain, inactive: true)) != nil
            if !defined {
                let files = Dictionary(uniqueKeysWithValues: target.files.map { ($0.key, (path: $0.value, format: target.formats[$0.key] ?? "raw")) })
                let xml = try DomainDescription(xml: source.definition).restoredXML(name: target.domain, disks: files)
                try hypervisor.virsh(["define", "/dev/stdin"], input: Data(xml.utf8))
            }
            if target.start, try !hypervisor.isRunning(target.domain) { try hypervisor.virsh(["start", "--", target.domain]) }
            return target.start
        }
        return [.result(JobResult(job: task.job, status: .succeeded, backupId: plan.backupId,
                                  details: ["hypervisor": target.hypervisor, "domain": target.domain, "started": "\(started)",
                                            "files": target.files.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")]))]
    }
}

extension Hypervisor {
    /// Runs an operator's pre/post snapshot command on the hypervisor with the domain's name
    /// in `LIFEBOAT_DOMAIN`.
    func runHook(_ command: String, domain: String) throws {
        try run(["env", "LIFEBOAT_DOMAIN=\(domain)", "sh", "-c", command])
    }
}

private extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
