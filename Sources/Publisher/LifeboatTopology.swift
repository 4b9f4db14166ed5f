import AMQP

/// Every exchange, queue and binding Lifeboat uses (the README's "Messaging" section lists
/// them for operators). Declared by every component on every connect: idempotent.
public enum LifeboatTopology {
    public enum Exchange {
        /// Backup, restore and cancel requests from other systems (topic; keys `request.<type>`).
        public static let requests = "lifeboat.requests"
        /// Task events between workers (topic; keys `task.<kind>`, and `urgent.<kind>` for the
        /// tasks of jobs of priority 5 or above).
        public static let tasks = "lifeboat.tasks"
        /// Results for monitors (topic; keys `<project>.<instance>.<job>.<status>`).
        public static let results = "lifeboat.results"
        /// Messages a worker refused, unchanged, with the reason in their headers (topic; key = source queue).
        public static let deadLetters = "lifeboat.dead-letters"
        /// Inventory reports for monitors (topic; key `inventory.report`).
        public static let inventory = "lifeboat.inventory"
    }

    public enum Queue {
        public static let requests = "lifeboat.requests"
        public static let tasks = "lifeboat.tasks"
        /// The tasks of urgent jobs (priority 5 or above: restores unless they say otherwise).
        /// Workers consume it alongside `lifeboat.tasks`, with slots of its own, so an urgent job
        /// starts at once instead of behind the backlog: what makes priorities take effect on
        /// quorum queues, which RabbitMQ before 4.0 delivers in order regardless.
        public static let urgentTasks = "lifeboat.tasks.urgent"
        /// Lifeboat's OWN queue bound to OpenStack's notification exchanges; it never consumes
        /// the `notifications.info` queues that other services read.
        public static let notifications = "lifeboat.notifications"
        /// Every result, for audit and for monitors that do not bind their own queue; bounded.
        public static let results = "lifeboat.results"
        public static let deadLetters = "lifeboat.dead-letters"
        /// The latest inventory reports (bounded: older ones are dropped).
        public static let inventory = "lifeboat.inventory"

        /// The delay queue a task waits in before its retry (one ladder per task queue).
        public static func taskRetry(afterSeconds seconds: Int, urgent: Bool = false) -> String {
            "\(urgent ? urgentTasks : tasks).retry.\(seconds)s"
        }
    }

    /// Header names Lifeboat writes.
    public enum Header {
        /// Why a message was dead-lettered, in words.
        public static let reason = "x-lifeboat-reason"
        public static let sourceQueue = "x-lifeboat-source-queue"
        public static let originalExchange = "x-lifeboat-original-exchange"
        public static let originalRoutingKey = "x-lifeboat-original-routing-key"
        public static let rejectedAt = "x-lifeboat-rejected-at"
        /// How many times a task has been tried (1 for the first).
        public static let attempt = "x-lifeboat-attempt"
    }

    /// A task waits this long before retry N (1-based); the last value repeats.
    public static let retryDelaysSeconds = [1, 5, 30, 120, 600]

    /// Deliveries of one message before the broker dead-letters it as poison (a worker that
    /// crashes on it every time). Normal failures go through the retry queues long before.
    public static let deliveryLimit = 20

    /// At most this many results are kept in `lifeboat.results`; older ones are dropped.
    public static let resultsBacklog = 100_000

    /// At most this many inventory reports are kept in `lifeboat.inventory` (a day of hourly ones).
    public static let inventoryBacklog = 24

    /// An OpenStack service's notification exchange and the keys to bind.
    public struct NotificationSource: Sendable, Hashable {
        public var exchange: String
        public var routingKeys: [String]
        /// Must match how the service declared it (oslo.messaging: `amqp_durable_queues`,
        /// false by default), or the broker refuses the declaration.
        public var durable: Bool

        public init(exchange: String, routingKeys: [String], durable: Bool = false) {
            self.exchange = exchange
            self.routingKeys = routingKeys
            self.durable = durable
        }

        /// Nova's versioned and legacy notifications.
        public static let nova = NotificationSource(exchange: "nova", routingKeys: ["versioned_notifications.info", "notifications.info"])
    }

    /// The exchanges, work queues, retry ladder, results and dead letters.
    public static let core: Topology = {
        let exchanges = [Exchange.requests, Exchange.tasks, Exchange.results, Exchange.deadLetters, Exchange.inventory]
            .map { ExchangeSpec(name: $0, kind: .topic) }
        func workQueue(_ name: String) -> QueueSpec {
            .quorum(name, deadLetterExchange: Exchange.deadLetters, deadLetterRoutingKey: name, deliveryLimit: deliveryLimit)
        }
        // A retry waits in a delay queue until its TTL, then the broker moves it back to its
        // task queue (through the default exchange, addressed by queue name).
        let retryQueues = [false, true].flatMap { urgent in
            Set(retryDelaysSeconds).sorted().map { seconds in
                QueueSpec.quorum(Queue.taskRetry(afterSeconds: seconds, urgent: urgent), deadLetterExchange: "",
                                 deadLetterRoutingKey: urgent ? Queue.urgentTasks : Queue.tasks, messageTTLMilliseconds: seconds * 1000)
            }
        }
        return Topology(
            exchanges: exchanges,
            queues: [workQueue(Queue.requests), workQueue(Queue.tasks), workQueue(Queue.urgentTasks), workQueue(Queue.notifications),
                     .quorum(Queue.results, maxLength: resultsBacklog), .quorum(Queue.deadLetters),
                     .quorum(Queue.inventory, maxLength: inventoryBacklog)] + retryQueues,
            bindings: [
                BindingSpec(queue: Queue.requests, exchange: Exchange.requests, routingKey: "request.#"),
                BindingSpec(queue: Queue.tasks, exchange: Exchange.tasks, routingKey: "task.#"),
                BindingSpec(queue: Queue.urgentTasks, exchange: Exchange.tasks, routingKey: "urgent.#"),
                BindingSpec(queue: Queue.results, exchange: Exchange.results, routingKey: "#"),
                BindingSpec(queue: Queue.deadLetters, exchange: Exchange.deadLetters, routingKey: "#"),
                BindingSpec(queue: Queue.inventory, exchange: Exchange.inventory, routingKey: "#"),
            ])
    }()

    /// The core plus the bindings of `lifeboat.notifications` to OpenStack's exchanges.
    public static func withNotifications(_ sources: [NotificationSource]) -> Topology {
        core + Topology(
            exchanges: sources.map { ExchangeSpec(name: $0.exchange, kind: .topic, durable: $0.durable) },
            bindings: sources.flatMap { source in
                source.routingKeys.map { BindingSpec(queue: Queue.notifications, exchange: source.exchange, routingKey: $0) }
            })
    }
}
