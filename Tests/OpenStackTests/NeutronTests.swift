import Foundation
import OpenStack
import XCTest

/// Neutron against the project's OpenStack (API only: no agents, so no ports on servers).
final class NeutronTests: XCTestCase {
    func testNetworksAndSecurityGroupsWithRules() throws {
        let session = try TestOpenStack.session(cloud: "lifeboat-bob")
        let neutron = try NeutronClient(session: session)
        let demo = try TestOpenStack.value("DEMO_PROJECT_ID")
        XCTAssertNoThrow(try neutron.networks())
        let groups = try neutron.securityGroups(projectID: demo)
        // Neutron makes a project's "default" group on first use, with its egress rules.
        let group = try XCTUnwrap(groups.first { $0.name == "default" }, "\(groups.map(\.name))")
        XCTAssertEqual(group.projectID, demo)
        XCTAssertTrue(group.rules.contains { $0.direction == "egress" && $0.ethertype == "IPv4" })
        XCTAssertEqual(try neutron.securityGroup(group.id), group)
        XCTAssertEqual(try neutron.ports(ofDevice: UUID().uuidString.lowercased()), [])
    }

    func testConnectionsAreReusedWhereTheServerAllowsIt() throws {
        let session = try TestOpenStack.session(cloud: "lifeboat-bob")
        let neutron = try session.endpoint(for: "network").appendingPathComponent("v2.0/networks")
        try session.send(HTTPRequest(.get, neutron))
        XCTAssertEqual(try session.send(HTTPRequest(.get, neutron)).newConnections, 0, "Neutron keeps the connection open: reused")
        // Keystone under uwsgi closes every connection: each request opens one, and works.
        let keystone = try session.configuration.identityURL.appendingPathComponent("auth/projects")
        for _ in 0..<3 {
            let response = try session.send(HTTPRequest(.get, keystone))
            XCTAssertEqual(response.headers["Connection"]?.lowercased(), "close")
            XCTAssertEqual(response.newConnections, 1)
        }
    }
}
