// swift-tools-version:6.0
// Lifeboat: backup and restore for OpenStack virtual machines, as event-driven workers on RabbitMQ.
import PackageDescription

/// Every Swift target: Swift 6 language mode (strict concurrency) and warnings treated as errors
/// are not set here so that a new compiler's new warning does not break an operator's build; CI
/// checks "no warnings" itself (see .ci/run).
let package = Package(
    name: "Lifeboat",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "lifeboat", targets: ["lifeboat"]),
        .library(name: "Events", targets: ["Events"]),
        .library(name: "Publisher", targets: ["Publisher"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", exact: "3.12.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams", exact: "6.2.2"),
    ],
    targets: [
        // One shim per C library; nothing else lives in them.
        .systemLibrary(name: "CRabbitMQ", pkgConfig: "librabbitmq", providers: [.apt(["librabbitmq-dev"])]),
        .systemLibrary(name: "CSSH2", pkgConfig: "libssh2", providers: [.apt(["libssh2-1-dev"])]),
        .systemLibrary(name: "CRBD", providers: [.apt(["librbd-dev", "librados-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),

        // The vocabulary: every message Lifeboat reads or writes. Foundation only.
        .target(name: "Events"),
        // librabbitmq wrapper: connections confined to their own threads, topology, consumers.
        .target(name: "AMQP", dependencies: [
            "CRabbitMQ",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Publishing with confirms: what the workers and other systems use to send.
        .target(name: "Publisher", dependencies: [
            "AMQP", "Events",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Clients for the data sources, one per C library.
        .target(name: "SSH", dependencies: ["CSSH2"]),
        .target(name: "Ceph", dependencies: ["CRBD", "Repository"]),
        .target(name: "OpenStack", dependencies: [
            "CCurl",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Yams", package: "Yams"),
        ]),
        .target(name: "Compression", dependencies: ["CZstd"]),
        // Where backups live: chunk store, indexes, manifests.
        .target(name: "Repository", dependencies: [
            "Compression", "CXXHash",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // The libvirt strategy's hypervisor side: virsh and qemu-img over SSH, domain XML,
        // and the block source that reads a frozen image chain.
        .target(name: "Libvirt", dependencies: ["Repository", "SSH"]),
        // Intake, planner, task runners, strategies: the worker runtime.
        .target(name: "Workers", dependencies: [
            "AMQP", "Events", "Publisher", "Repository", "SSH", "Libvirt", "Ceph", "OpenStack",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // The `lifeboat` command: worker, send, watch, repository tools.
        .executableTarget(name: "lifeboat", dependencies: [
            "Workers", "Repository",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Small command over the Repository API for the benchmark and the crash/concurrency tests.
        .executableTarget(name: "repository-tool", dependencies: ["Repository"], path: "Sources/RepositoryTool"),
        // Publish/consume throughput against the broker and SSH stream throughput against an
        // sshd, for scripts/bench-amqp.sh and scripts/bench-ssh.sh.
        .executableTarget(name: "lifeboat-bench", dependencies: ["AMQP", "SSH", .product(name: "Logging", package: "swift-log")], path: "Sources/LifeboatBench"),

        .testTarget(name: "EventsTests", dependencies: ["Events"]),
        .testTarget(name: "BindingsTests", dependencies: ["SSH", "Ceph", "OpenStack", "Compression", "AMQP"]),
        .testTarget(name: "MessagingTests", dependencies: [
            "AMQP", "Publisher", "Events", "Workers", "Repository", "Libvirt", "OpenStack", .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "RepositoryTests", dependencies: ["Repository"]),
        // Against the project's own single-node Ceph (scripts/ceph.sh).
        .testTarget(name: "CephTests", dependencies: ["Ceph", "Repository", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(name: "LibvirtTests", dependencies: ["Libvirt", "Repository", "SSH"]),
        // Against a real OpenSSH sshd on loopback (scripts/sshd.sh).
        .testTarget(name: "SSHTests", dependencies: ["SSH", .product(name: "Crypto", package: "swift-crypto")]),
        // Against the project's own OpenStack (scripts/openstack.sh), plus loopback stand-ins for faults.
        .testTarget(name: "OpenStackTests", dependencies: [
            "OpenStack", .product(name: "Logging", package: "swift-log"), .product(name: "Crypto", package: "swift-crypto"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
