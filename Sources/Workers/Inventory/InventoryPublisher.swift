import Ceph
import Foundation
import Libvirt
import Logging
import Publisher
import Repository

/// Publishes the inventory for monitors: every `interval` the worker takes `InventoryReport`
/// (the cloud held against its hypervisor, Ceph and policy lists, with the problems to fix)
/// and publishes it on `lifeboat.inventory`, whose queue keeps the latest reports. Without SSH
/// logins: those are `lifeboat inventory --check-ssh`'s, on demand.
///
/// The cloud unreachable: the pass is skipped (logged) and the next one tries again.
final class InventoryPublisher: Sendable {
    private let inventory: OpenStackInventory
    private let hypervisors: HypervisorDirectory
    private let clusters: CephClusterDirectory
    private let policies: ProtectionPolicies?
    private let attachmentProxy: String?
    private let repository: Repository?
    private let publisher: LifeboatPublisher
    private let interval: Duration
    private let logger: Logger

    init(inventory: OpenStackInventory, hypervisors: HypervisorDirectory, clusters: CephClusterDirectory, policies: ProtectionPolicies?,
         attachmentProxy: String?, repository: Repository?, publisher: LifeboatPublisher, interval: Duration, logger: Logger) {
        self.inventory = inventory
        self.hypervisors = hypervisors
        self.clusters = clusters
        self.policies = policies
        self.attachmentProxy = attachmentProxy
        self.repository = repository
        self.publisher = publisher
        self.interval = interval
        self.logger = logger
    }

    /// Publishes until the task is cancelled.
    func run() async {
        while !Task.isCancelled {
            await publishOnce()
            try? await Task.sleep(for: interval)
        }
    }

    func publishOnce() async {
        let (inventory, hypervisors, clusters, policies, proxy, repository) = (inventory, hypervisors, clusters, policies, attachmentProxy, repository)
        do {
            var report = try await runBlocking {
                try inventory.report(hypervisors: hypervisors, clusters: clusters, policies: policies, attachmentProxy: proxy,
                                     repository: repository, checkSSH: false)
            }
            report.takenBy = ProcessInfo.processInfo.hostName
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            try await publisher.publishAll([.inventory(try encoder.encode(report), messageId: UUID().uuidString.lowercased())])
            logger.info("inventory published", metadata: ["instances": "\(report.instances.count)", "problems": "\(report.problems.count)"])
        } catch {
            logger.warning("inventory: cannot take or publish it; trying again next time", metadata: ["error": "\(error)"])
        }
    }
}
