import Events
import Foundation
import Logging
import OpenStack
import Publisher
import Synchronization

/// Runs the protection policies' schedules: every pass lists Nova's servers (all projects), finds
/// those a policy protects (by their metadata and tags, as the notifications do), and for each
/// schedule whose current slot is open publishes a backup request.
///
/// The request id is `<policy>-<instance>-<schedule>-<slot start, Unix seconds>`: the same for
/// every pass and every worker that schedules within one slot, so a slot is one job however
/// many schedulers run (a planned job's replay is harmless), and a restarted scheduler does not
/// back an instance up twice in one slot. An instance whose metadata or tags stop matching is
/// no longer scheduled; the scheduler logs each instance that joins or leaves a policy.
///
/// Nova unreachable: the pass is skipped (logged) and the next one tries again.
public final class BackupScheduler: Sendable {
    private let policies: ProtectionPolicies
    private let inventory: OpenStackInventory
    private let publisher: LifeboatPublisher
    private let interval: Duration
    private let logger: Logger
    private let state = Mutex(State())

    private struct State {
        /// Request ids published, with when their slot's window closes (then forgotten).
        var published: [String: Date] = [:]
        /// Instance → policy, as of the last pass.
        var protected: [String: String] = [:]
    }

    init(policies: ProtectionPolicies, inventory: OpenStackInventory, publisher: LifeboatPublisher, interval: Duration,
         logger: Logger) {
        self.policies = policies
        self.inventory = inventory
        self.publisher = publisher
        self.interval = interval
        self.logger = logger
    }

    /// Passes until the task is cancelled.
    func run() async {
        while !Task.isCancelled {
            await pass(now: Date())
            try? await Task.sleep(for: interval)
        }
    }

    /// One pass: the servers, then the requests that are due, published (confirmed by the broker).
    func pass(now: Date) async {
        let inventory = self.inventory
        let servers: [Server]
        do {
            servers = try await runBlocking { try NovaClient(session: inventory.session).servers(allProjects: true) }
        } catch {
            logger.warning("scheduler: cannot list Nova's servers; trying again next pass", metadata: ["error": "\(error)"])
            return
        }
        // Slots whose window closed cannot come due again: forget them.
        state.withLock { state in state.published = state.published.filter { $0.value > now } }
        for (request, closes) in due(servers: servers, now: now) {
            do {
                try await publisher.send(request)
                state.withLock { _ = $0.published[request.requestId] = closes }
                logger.info("scheduled backup requested", metadata: ["request": "\(request.requestId)", "instance": "\(request.instance)",
                                                                   "mode": "\(request.mode.rawValue)"])
            } catch {
                logger.warning("scheduler: cannot publish a backup request; trying again next pass",
                               metadata: ["request": "\(request.requestId)", "error": "\(error)"])
            }
        }
    }

    /// The backup requests due at `now` for `servers` that this scheduler has not published yet,
    /// each with the end of its slot's window.
    func due(servers: [Server], now: Date) -> [(BackupRequest, Date)] {
        var protected: [String: String] = [:]
        var requests: [(BackupRequest, Date)] = []
        let published = state.withLock { $0.published }
        for server in servers where !["BUILD", "ERROR", "DELETED", "SOFT_DELETED"].contains(server.status) {
            guard let policy = policies.policy(metadata: server.metadata, tags: server.tags), let project = server.projectID else { continue }
            protected[server.id] = policy.name
            for schedule in policy.schedules ?? [] {
                let slot = schedule.slot(at: now)
                guard slot.open else { continue }
                let id = "\(policy.name)-\(server.id)-\(schedule.name)-\(Int(slot.start.timeIntervalSince1970))"
                guard published[id] == nil else { continue }
                let request = BackupRequest(requestId: id, project: project, instance: server.id,
                                            mode: schedule.mode ?? policy.mode ?? .incremental, policy: policy.name,
                                            priority: schedule.priority ?? policy.priority,
                                            labels: ["trigger": "schedule", "schedule": schedule.name])
                requests.append((request, slot.start.addingTimeInterval(Double(schedule.window))))
            }
        }
        let before = state.withLock { state in
            defer { state.protected = protected }
            return state.protected
        }
        for (server, policy) in protected where before[server] != policy {
            logger.notice("instance protected by a policy", metadata: ["instance": "\(server)", "policy": "\(policy)"])
        }
        for (server, policy) in before where protected[server] == nil {
            logger.notice("instance no longer protected: no policy matches it (or Nova no longer lists it)",
                          metadata: ["instance": "\(server)", "policy": "\(policy)"])
        }
        return requests
    }
}
