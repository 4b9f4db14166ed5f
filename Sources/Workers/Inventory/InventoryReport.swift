import Ceph
import Foundation
import Libvirt
import Logging
import OpenStack
import Repository

/// What Lifeboat can protect in the cloud, and what stands in its way: the compute hosts with
/// whether the operator gave their SSH credentials (and, when checked, whether the login and
/// host key work), every server with where its backup would read it, every volume with the Ceph
/// cluster its backend maps to, and Cinder's storage pools. `problems` lists what an operator has
/// to fix for a backup to run (`lifeboat inventory` prints it; workers publish it on
/// `lifeboat.inventory` every `LIFEBOAT_INVENTORY_SECONDS`, see `InventoryPublisher`).
public struct InventoryReport: Codable, Sendable, Equatable {
    public static let messageType = "inventory.report"

    public struct ComputeHostEntry: Codable, Sendable, Equatable {
        public var host: String
        public var state: String?
        public var status: String?
        /// The `LIFEBOAT_HYPERVISORS` entry Lifeboat logs in with, if any.
        public var hypervisorEntry: String?
        /// "ok", or why the SSH login (or `virsh version` there) failed; only when checked.
        public var ssh: String?
    }

    public struct InstanceEntry: Codable, Sendable, Equatable {
        public var id: String
        public var name: String
        public var project: String?
        public var status: String
        public var host: String?
        public var domain: String?
        /// The hypervisor entry its file disks are read through.
        public var hypervisorEntry: String?
        public var volumes: [String]
        /// The policy protecting it, by its metadata or tags.
        public var policy: String?
    }

    public struct VolumeEntry: Codable, Sendable, Equatable {
        public var id: String
        public var name: String?
        public var project: String?
        public var sizeGiB: Int
        public var status: String
        public var backend: String?
        public var attachedTo: [String]
        /// The Ceph cluster and pool its backend maps to (`openstackBackends`).
        public var cephCluster: String?
        public var cephPool: String?
    }

    /// A Nova server with backups in the repository that Nova no longer lists: deleted (its
    /// deletion is logged when the notification arrives). Its backups stay until retention
    /// removes them.
    public struct DeletedInstanceEntry: Codable, Sendable, Equatable {
        public var id: String
        public var name: String
        public var project: String
        public var backups: Int
        public var lastBackup: String
        public var lastBackupAt: Double
    }

    public struct PoolEntry: Codable, Sendable, Equatable {
        public var name: String
        public var backend: String?
        public var storageProtocol: String?
        public var totalGiB: Double?
        public var freeGiB: Double?
        public var cephCluster: String?
        public var cephPool: String?
    }

    /// `inventory.report`, version 1: what a monitor reading `lifeboat.inventory` gets.
    public var type = InventoryReport.messageType
    public var version = 1
    public var takenAt: Double
    /// The worker that took it (its host name), when published.
    public var takenBy: String? = nil
    /// The proxy server disk attachment uses, when the worker has one: its host and domain.
    public var attachmentProxy: InstanceEntry? = nil
    public var computeHosts: [ComputeHostEntry]
    public var instances: [InstanceEntry]
    public var volumes: [VolumeEntry]
    public var pools: [PoolEntry]
    /// When the worker has a repository: the deleted servers it holds backups of.
    public var deletedInstances: [DeletedInstanceEntry]? = nil
    public var problems: [String]
}

extension OpenStackInventory {
    /// Reads the cloud as its admin and holds it against the operator's lists. Blocking.
    /// `checkSSH`: log in to every configured compute host (host key verified) and say how it went.
    /// `attachmentProxy`: the disk-attachment proxy server, checked to exist on a reachable host.
    /// `repository`: the backups held against Nova's servers, for the deleted ones.
    func report(hypervisors: HypervisorDirectory, clusters: CephClusterDirectory, policies: ProtectionPolicies?,
                attachmentProxy: String? = nil, repository: Repository? = nil, checkSSH: Bool) throws -> InventoryReport {
        let nova = try NovaClient(session: session), cinder = try CinderClient(session: session)
        let computeHosts = try nova.computeHosts(), servers = try nova.servers(allProjects: true)
        let volumes = try cinder.volumes(allProjects: true), pools = try cinder.pools()
        var problems: [String] = []

        let hosts = computeHosts.map { compute in
            let host = compute.serviceHost ?? compute.hypervisorHostname
            let entry = Self.hypervisorEntry(host: host, hypervisorHostname: compute.hypervisorHostname, in: hypervisors)
            var ssh: String?
            if entry == nil {
                problems.append("compute host \(host) has no entry in LIFEBOAT_HYPERVISORS: Lifeboat cannot log in to back up its instances")
            } else if checkSSH, let entry {
                do {
                    // Host key verified, logged in, and libvirt answering.
                    try hypervisors.connect(entry).virsh(["version"])
                    ssh = "ok"
                } catch {
                    ssh = "\(error)"
                    problems.append("compute host \(host) (entry \(entry)): SSH login failed: \(error)")
                }
            }
            return InventoryReport.ComputeHostEntry(host: host, state: compute.state, status: compute.status, hypervisorEntry: entry, ssh: ssh)
        }

        let instances = servers.map { server in
            let entry = server.host.flatMap { Self.hypervisorEntry(host: $0, hypervisorHostname: server.hypervisorHostname, in: hypervisors) }
            let policy = policies?.policy(metadata: server.metadata, tags: server.tags)?.name
            if let policy, entry == nil {
                problems.append("server \(server.id) (\(server.name)) is protected by policy \(policy) but its compute host "
                                + "\(server.host ?? "(none yet)") has no entry in LIFEBOAT_HYPERVISORS")
            }
            return InventoryReport.InstanceEntry(id: server.id, name: server.name, project: server.projectID, status: server.status,
                                                 host: server.host, domain: server.instanceName, hypervisorEntry: entry,
                                                 volumes: server.attachedVolumes.map(\.id), policy: policy)
        }

        let volumeEntries = volumes.map { volume in
            let location = volume.location
            let ceph = location.flatMap { clusters.cinderPool(host: $0.host, backend: $0.backend) }
            return InventoryReport.VolumeEntry(id: volume.id, name: volume.name, project: volume.projectID, sizeGiB: volume.size,
                                               status: volume.status, backend: location?.backend,
                                               attachedTo: volume.attachments.compactMap(\.serverID),
                                               cephCluster: ceph?.cluster, cephPool: ceph?.pool)
        }

        let poolEntries = pools.map { pool in
            let ceph = clusters.cinderPool(host: pool.location.host, backend: pool.location.backend)
            if ceph == nil {
                problems.append("Cinder backend \(pool.name) (\(pool.storageProtocol ?? "?")) is not mapped to a Ceph cluster "
                                + "(openstackBackends): restores as new instances cannot write its volumes")
            }
            return InventoryReport.PoolEntry(name: pool.name, backend: pool.location.backend, storageProtocol: pool.storageProtocol,
                                             totalGiB: pool.totalCapacityGB, freeGiB: pool.freeCapacityGB,
                                             cephCluster: ceph?.cluster, cephPool: ceph?.pool)
        }
        var proxy: InventoryReport.InstanceEntry?
        if let attachmentProxy {
            proxy = instances.first { $0.id == attachmentProxy }
            if proxy == nil {
                problems.append("the disk-attachment proxy server \(attachmentProxy) (LIFEBOAT_ATTACHMENT_PROXY) does not exist")
            } else if proxy?.hypervisorEntry == nil {
                problems.append("the disk-attachment proxy server \(attachmentProxy) runs on compute host \(proxy?.host ?? "(none yet)"), "
                                + "which has no entry in LIFEBOAT_HYPERVISORS: the volumes attached to it cannot be read")
            }
        }
        return InventoryReport(takenAt: Date().timeIntervalSince1970, attachmentProxy: proxy, computeHosts: hosts, instances: instances,
                               volumes: volumeEntries, pools: poolEntries,
                               deletedInstances: try repository.map { try Self.deletedInstances(in: $0, live: Set(servers.map(\.id))) },
                               problems: problems)
    }

    /// The servers backed up with their Nova record that are not among `live`, with their backups.
    static func deletedInstances(in repository: Repository, live: Set<String>) throws -> [InventoryReport.DeletedInstanceEntry] {
        var entries: [String: InventoryReport.DeletedInstanceEntry] = [:]
        for manifest in try repository.listBackups() {  // oldest first
            guard let metadata = try? JSONDecoder().decode(BackupMetadata.self, from: manifest.metadata), let record = metadata.openstack,
                  !live.contains(metadata.instance) else { continue }
            entries[metadata.instance] = InventoryReport.DeletedInstanceEntry(
                id: metadata.instance, name: record.server.name, project: metadata.project,
                backups: (entries[metadata.instance]?.backups ?? 0) + 1, lastBackup: manifest.id,
                lastBackupAt: manifest.createdAt.timeIntervalSince1970)
        }
        return entries.values.sorted { $0.id < $1.id }
    }

    /// The `LIFEBOAT_HYPERVISORS` entry of a compute host: the entry named after the host (or
    /// its hypervisor host name), else one whose address is either.
    static func hypervisorEntry(host: String, hypervisorHostname: String?, in directory: HypervisorDirectory) -> String? {
        let names = [host, hypervisorHostname].compactMap { $0 }
        return names.first { directory.entries[$0] != nil }
            ?? directory.entries.values.sorted { $0.name < $1.name }.first { names.contains($0.address) }?.name
    }
}

extension InventoryReport {
    /// The report for a worker's configuration (its OpenStack account, hypervisor and Ceph
    /// cluster lists, policies), as `lifeboat inventory` prints it. Blocking.
    public static func take(configuration: WorkerConfiguration, checkSSH: Bool, logger: Logger) throws -> InventoryReport {
        guard let cloud = configuration.openstackCloud else {
            throw InventoryUnavailable("LIFEBOAT_OPENSTACK_CLOUD is not set: there is no cloud to take an inventory of")
        }
        let inventory = OpenStackInventory(configuration: try CloudConfiguration.load(cloud: cloud == "env" ? nil : cloud), logger: logger)
        let repository = try configuration.repositoryPath.map { try Repository.open(path: $0, passphrase: configuration.repositoryPassphrase) }
        return try inventory.report(
            hypervisors: try configuration.hypervisorsFile.map { try HypervisorDirectory(contentsOf: $0) } ?? HypervisorDirectory(),
            clusters: try configuration.cephClustersFile.map { try CephClusterDirectory(contentsOf: $0) } ?? CephClusterDirectory(),
            policies: try configuration.policiesFile.map { try ProtectionPolicies(contentsOf: $0, logger: logger) },
            attachmentProxy: configuration.attachmentProxy, repository: repository, checkSSH: checkSSH)
    }
}

public struct InventoryUnavailable: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
