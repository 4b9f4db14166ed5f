import ArgumentParser
import Foundation
import Logging
import Workers

struct InventoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inventory",
        abstract: "List the cloud's compute hosts, servers, volumes and storage pools as Lifeboat sees them, and what keeps any from being backed up.",
        discussion: """
            Reads the worker's settings (LIFEBOAT_OPENSTACK_CLOUD, LIFEBOAT_HYPERVISORS, LIFEBOAT_CEPH_CLUSTERS,
            LIFEBOAT_POLICIES). Exits 1 when there are problems to fix.
            """)

    @Flag(help: "Log in to every configured compute host over SSH (host key verified) and run `virsh version`.") var checkSsh = false
    @Flag(help: "Print the report as JSON.") var json = false

    func run() async throws {
        bootstrapLogging(defaultLevel: .warning)
        let configuration = try WorkerConfiguration.fromEnvironment()
        let checkSSH = checkSsh
        let report = try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try InventoryReport.take(configuration: configuration, checkSSH: checkSSH,
                                                                           logger: Logger(label: "lifeboat.inventory")) })
            }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print("compute hosts:")
            for host in report.computeHosts {
                print("  \(host.host)  \(host.state ?? "?")/\(host.status ?? "?")  entry: \(host.hypervisorEntry ?? "NONE")"
                      + (host.ssh.map { "  ssh: \($0)" } ?? ""))
            }
            print("servers:")
            for server in report.instances {
                print("  \(server.id)  \(server.name)  \(server.status)  host: \(server.host ?? "-")  entry: \(server.hypervisorEntry ?? "NONE")"
                      + "  volumes: \(server.volumes.count)  policy: \(server.policy ?? "-")")
            }
            print("volumes:")
            for volume in report.volumes {
                print("  \(volume.id)  \(volume.sizeGiB) GiB  \(volume.status)  backend: \(volume.backend ?? "?")  ceph: "
                      + (volume.cephCluster.map { "\($0)/\(volume.cephPool ?? "?")" } ?? "NONE"))
            }
            print("storage pools:")
            for pool in report.pools {
                print("  \(pool.name)  \(pool.storageProtocol ?? "?")  free \(pool.freeGiB.map { String(format: "%.0f", $0) } ?? "?") GiB  ceph: "
                      + (pool.cephCluster.map { "\($0)/\(pool.cephPool ?? "?")" } ?? "NONE"))
            }
            if let deleted = report.deletedInstances, !deleted.isEmpty {
                print("deleted servers with backups (kept until retention removes them):")
                for server in deleted {
                    print("  \(server.id)  \(server.name)  project \(server.project)  \(server.backups) backup(s), last \(server.lastBackup)")
                }
            }
            print(report.problems.isEmpty ? "no problems" : "problems:\n" + report.problems.map { "  - \($0)" }.joined(separator: "\n"))
        }
        if !report.problems.isEmpty { throw ExitCode(1) }
    }
}
