import Foundation
import Logging
import OpenStack
@testable import Workers
import XCTest

/// Where a server restored into another project is attached, against the real Neutron: saved
/// networks found by id when shared, by name in the target project otherwise (or refused,
/// saying so); saved security groups found by name or recreated with their rules.
final class TargetNetworkingTests: XCTestCase {
    func testSavedNetworksAndSecurityGroupsAreFoundOrRecreatedInTheTargetProject() async throws {
        try TestOpenStack.require()
        let environment = TestOpenStack.environment
        let demo = try XCTUnwrap(environment["LIFEBOAT_TEST_OS_DEMO_PROJECT_ID"])
        let target = try XCTUnwrap(environment["LIFEBOAT_TEST_OS_RESTORE_PROJECT_ID"])
        let suffix = UUID().uuidString.prefix(6).lowercased()
        let admin = OpenStackInventory(configuration: try CloudConfiguration.load(cloud: "lifeboat-admin"), logger: Logger(label: "test"))

        // In demo: a private network with a port, a shared one with a port, and a security group
        // whose rules include one naming the group itself. In the target: a network of the same
        // name as demo's private one.
        func network(_ name: String, project: String, shared: Bool = false) async throws -> String {
            let created = try await TestOpenStack.cli("lifeboat-admin", ["network", "create", "--project", project, "--provider-network-type", "flat",
                                                                           "--provider-physical-network", "physnet-\(UUID().uuidString.prefix(8))"]
                                                      + (shared ? ["--share"] : []) + [name])
            return try XCTUnwrap((created as? [String: Any])?["id"] as? String)
        }
        let privateNet = try await network("lb-private-\(suffix)", project: demo)
        let sharedNet = try await network("lb-shared-\(suffix)", project: demo, shared: true)
        let targetNet = try await network("lb-private-\(suffix)", project: target)
        // Only in demo: a restore into the target that names it is refused.
        let missingNet = try await network("lb-missing-\(suffix)", project: demo)
        defer {
            Task {
                for id in [privateNet, sharedNet, targetNet, missingNet] {
                    _ = try? await runProcess("/usr/bin/openstack", ["--os-cloud", "lifeboat-admin", "network", "delete", id])
                }
            }
        }
        let demoNeutron = try NeutronClient(session: admin.session(inProject: demo))
        var ports: [OpenStack.Port] = []
        for net in [privateNet, sharedNet] {
            _ = try await TestOpenStack.cli("lifeboat-admin", ["port", "create", "--network", net, "--project", demo, "lb-port-\(suffix)"])
            ports += try await runBlocking { try demoNeutron.ports(filters: ["network_id": net]) }
        }
        let networks = try await runBlocking { try [privateNet, sharedNet].map { try demoNeutron.network($0) } }
        let group = try await runBlocking { () -> SecurityGroup in
            let made = try demoNeutron.createSecurityGroup(name: "lb-web-\(suffix)", description: "web servers")
            let template = made.rules.first { $0.direction == "egress" && $0.ethertype == "IPv4" }!
            var ssh = template
            ssh.direction = "ingress"; ssh.proto = "tcp"; ssh.portRangeMin = 22; ssh.portRangeMax = 22; ssh.remoteIPPrefix = "10.0.0.0/8"
            try demoNeutron.addRule(ssh, toGroup: made.id)
            var peers = template
            peers.direction = "ingress"; peers.remoteGroupID = made.id
            try demoNeutron.addRule(peers, toGroup: made.id)
            return try demoNeutron.securityGroup(made.id)
        }

        let networking = try TargetNetworking(session: admin.session(inProject: target), project: target, logger: Logger(label: "test"))
        let attached = try await runBlocking { [ports] in try networking.networks(requested: nil, savedPorts: ports, savedNetworks: networks) }
        XCTAssertEqual(attached, .attached([.network(targetNet), .network(sharedNet)]), "by name in the target; the shared one by id")
        let named = try await runBlocking { try networking.networks(requested: ["lb-private-\(suffix)"], savedPorts: [], savedNetworks: []) }
        XCTAssertEqual(named, .attached([.network(targetNet)]))
        let noPorts = try await runBlocking { try networking.networks(requested: nil, savedPorts: [], savedNetworks: []) }
        XCTAssertEqual(noPorts, ServerNetworks.none)
        XCTAssertThrowsError(try networking.networks(requested: ["lb-missing-\(suffix)"], savedPorts: [], savedNetworks: [])) { error in
            XCTAssertTrue("\(error)".contains("has no network lb-missing-\(suffix)"), "\(error)")
        }

        // The group is recreated in the target, its rules with it (the self-reference now names
        // the new group); a second restore finds it and adds nothing.
        let targetNeutron = try NeutronClient(session: admin.session(inProject: target))
        for _ in 0..<2 {
            let names = try await runBlocking { try networking.securityGroups([group]) }
            XCTAssertEqual(names, ["lb-web-\(suffix)"])
        }
        let recreated = try await runBlocking { try targetNeutron.securityGroups(projectID: target, name: "lb-web-\(suffix)") }
        XCTAssertEqual(recreated.count, 1)
        let rules = try XCTUnwrap(recreated.first).rules
        XCTAssertTrue(rules.contains { $0.direction == "ingress" && $0.proto == "tcp" && $0.portRangeMin == 22 && $0.remoteIPPrefix == "10.0.0.0/8" },
                      "\(rules)")
        XCTAssertTrue(rules.contains { $0.direction == "ingress" && $0.remoteGroupID == recreated.first?.id }, "\(rules)")
        XCTAssertEqual(rules.filter { $0.direction == "ingress" }.count, 2, "\(rules)")
        _ = try? await runBlocking {
            try demoNeutron.deleteSecurityGroup(group.id)
            for made in recreated { try targetNeutron.deleteSecurityGroup(made.id) }
        }
    }
}
