import AMQP
import Ceph
import Libvirt
import Logging
import OpenStack
import Publisher
import Repository
import ServiceLifecycle

/// One worker process: the intake and, when it has a repository, the task runner, each on a
/// consumer thread of its own, and a confirming publisher on its own thread.
public final class Worker: Sendable {
    public let configuration: WorkerConfiguration
    public let intake: Intake
    /// Nil when the worker has no repository: it then accepts requests and runs no tasks.
    public let taskRunner: TaskRunner?
    private let consumers: [AMQPConsumer]
    private let publisher: LifeboatPublisher
    /// Runs the policies' schedules, where there are any and OpenStack lists the instances.
    let scheduler: BackupScheduler?
    /// Publishes the inventory for monitors, where OpenStack is configured.
    let inventoryPublisher: InventoryPublisher?
    /// Lifeboat's OpenStack account, when configured: shared by the planner, the tasks and the scheduler.
    let inventory: OpenStackInventory?

    /// Opens the repository (if configured) first, so a wrong path or passphrase stops the
    /// worker at start, not at its first task.
    public init(configuration: WorkerConfiguration, notifications: any NotificationHandler = IgnoringNotificationHandler(),
                logger: Logger = Logger(label: "lifeboat.worker")) throws {
        self.configuration = configuration
        let topology = LifeboatTopology.withNotifications(configuration.notificationSources)
        let repository = try configuration.repositoryPath.map {
            try Repository.open(path: $0, passphrase: configuration.repositoryPassphrase)
        }
        let hypervisors = try configuration.hypervisorsFile.map { try HypervisorDirectory(contentsOf: $0) } ?? HypervisorDirectory()
        let clusters = try configuration.cephClustersFile.map { try CephClusterDirectory(contentsOf: $0) } ?? CephClusterDirectory()
        let inventory = try configuration.openstackCloud.map { cloud in
            OpenStackInventory(configuration: try CloudConfiguration.load(cloud: cloud == "env" ? nil : cloud), logger: logger)
        }
        self.inventory = inventory
        publisher = LifeboatPublisher(settings: configuration.amqp, topology: topology, logger: logger)
        let intakeConsumer = AMQPConsumer(settings: configuration.amqp, topology: topology,
                                          queues: [LifeboatTopology.Queue.requests, LifeboatTopology.Queue.notifications],
                                          prefetch: configuration.prefetch, name: "lifeboat-intake", logger: logger)
        let requests: any RequestHandler = repository.map {
            JobPlanner(repository: $0, settings: .init(rangeBytes: configuration.rangeBytes, fileSourceRoots: configuration.fileSourceRoots,
                                                        restoreRoots: configuration.restoreRoots, attachmentProxy: configuration.attachmentProxy,
                                                        attachmentBackends: configuration.attachmentBackends),
                       hypervisors: hypervisors, clusters: clusters,
                       inventory: inventory)
        } ?? AcceptOnlyRequestHandler()
        // The operator's protection policies, unless the embedding program brings its own handler.
        let policies = try configuration.policiesFile.map { try ProtectionPolicies(contentsOf: $0, logger: logger) }
        intake = Intake(consumer: intakeConsumer, publisher: publisher, requests: requests, notifications: policies ?? notifications,
                        logger: logger)
        if let policies, let inventory, configuration.schedulerSeconds > 0, policies.policies.contains(where: { $0.schedules?.isEmpty == false }) {
            scheduler = BackupScheduler(policies: policies, inventory: inventory, publisher: publisher,
                                        interval: .seconds(configuration.schedulerSeconds), logger: logger)
        } else {
            scheduler = nil
        }
        if let inventory, configuration.inventorySeconds > 0 {
            inventoryPublisher = InventoryPublisher(inventory: inventory, hypervisors: hypervisors, clusters: clusters, policies: policies,
                                                    attachmentProxy: configuration.attachmentProxy, repository: repository, publisher: publisher,
                                                    interval: .seconds(configuration.inventorySeconds), logger: logger)
        } else {
            inventoryPublisher = nil
        }
        if let repository {
            let taskConsumer = AMQPConsumer(settings: configuration.amqp, topology: topology, queues: [LifeboatTopology.Queue.tasks, LifeboatTopology.Queue.urgentTasks],
                                            prefetch: configuration.taskConcurrency, name: "lifeboat-tasks", logger: logger)
            taskRunner = TaskRunner(consumer: taskConsumer, publisher: publisher, repository: repository, hypervisors: hypervisors, clusters: clusters, inventory: inventory,
                                    rangeBytes: configuration.rangeBytes, sourceConcurrency: configuration.sourceConcurrency,
                                    maxAttempts: configuration.taskAttempts, logger: logger)
            consumers = [intakeConsumer, taskConsumer]
        } else {
            taskRunner = nil
            consumers = [intakeConsumer]
        }
    }

    /// Serves until `shutdown` is called.
    public func serve() async {
        let periodic = [scheduler.map { scheduler in Task { await scheduler.run() } },
                        inventoryPublisher.map { publisher in Task { await publisher.run() } }].compactMap { $0 }
        await withDiscardingTaskGroup { group in
            group.addTask { await self.intake.run() }
            if let taskRunner { group.addTask { await taskRunner.run() } }
        }
        for task in periodic { task.cancel() }
        for task in periodic { await task.value }
        await publisher.shutdown()
    }

    /// Stops taking deliveries; those in hand finish (or go back to their queue after `grace` seconds).
    public func shutdown(grace: Double = 30) async {
        for consumer in consumers { await consumer.shutdown(grace: grace) }
    }

    /// How many times the intake connected to the broker (reconnects show as more than one).
    public var intakeConnections: Int { consumers[0].connections }
}

/// A worker is a service: on graceful shutdown (SIGTERM from a service manager or a container
/// stop) it stops taking deliveries, lets those in hand finish, and returns.
extension Worker: Service {
    public func run() async throws {
        await withGracefulShutdownHandler {
            await serve()
        } onGracefulShutdown: {
            Task { await self.shutdown() }
        }
    }
}
