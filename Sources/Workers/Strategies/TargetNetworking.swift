import Foundation
import Logging
import OpenStack

/// A restored server's place on the target project's networks: the networks it is attached to
/// and the security groups it is in, found there or recreated from what the backup saved.
struct TargetNetworking {
    let neutron: NeutronClient
    let project: String
    let logger: Logger

    /// `session` is scoped to `project`, so what it creates belongs there.
    init(session: KeystoneSession, project: String, logger: Logger) throws {
        neutron = try NeutronClient(session: session)
        self.project = project
        self.logger = logger
    }

    private func visible(_ network: OpenStack.Network) -> Bool {
        network.projectID == project || network.shared == true
    }

    /// The requested networks (ids or names the target project sees), or the saved ones that it
    /// sees (by id: its own or shared; else by name in it); none when the server had none.
    func networks(requested: [String]?, savedPorts: [OpenStack.Port], savedNetworks: [OpenStack.Network]) throws -> ServerNetworks {
        if let requested {
            let ids = try requested.map { wanted in
                if let byID = try? neutron.network(wanted), visible(byID) { return byID.id }
                guard let byName = try neutron.networks(filters: ["name": wanted]).first(where: visible) else {
                    throw PermanentFailure("project \(project) has no network \(wanted)")
                }
                return byName.id
            }
            return ids.isEmpty ? .none : .attached(ids.map { NetworkAttachment.network($0) })
        }
        let saved = savedPorts.map(\.networkID)
        guard !saved.isEmpty else { return .none }
        let ids = try saved.map { id in
            if let network = try? neutron.network(id), visible(network) { return network.id }
            let name = savedNetworks.first { $0.id == id }?.name ?? id
            guard let byName = try neutron.networks(filters: ["name": name, "project_id": project]).first else {
                throw PermanentFailure("the saved network \(name) (\(id)) is not in project \(project): name the networks in the request")
            }
            return byName.id
        }
        return .attached(ids.map { NetworkAttachment.network($0) })
    }

    /// The saved security groups by name in the project: those missing are created there (their
    /// description marked as Lifeboat's) with the saved rules (a rule naming one of these groups as its remote names the new one; a rule
    /// naming another group is left out, and logged). Returns their names.
    func securityGroups(_ saved: [SecurityGroup]) throws -> [String] {
        var made: [String: String] = [:]  // saved id → id in the project
        var created: [SecurityGroup] = []
        for group in saved {
            let description = Self.restoredMark + (group.description ?? "")
            if let present = try neutron.securityGroups(projectID: project, name: group.name).first {
                made[group.id] = present.id
                // One a failed attempt made gets its rules now (adding a rule twice changes nothing).
                if present.description == description { created.append(group) }
            } else {
                made[group.id] = try neutron.createSecurityGroup(name: group.name, description: description).id
                created.append(group)
            }
        }
        for group in created {
            for var rule in group.rules {
                if let remote = rule.remoteGroupID {
                    guard let mapped = made[remote] else {
                        logger.warning("security group rule left out: its remote group was not saved",
                                       metadata: ["group": "\(group.name)", "remoteGroup": "\(remote)"])
                        continue
                    }
                    rule.remoteGroupID = mapped
                }
                try neutron.addRule(rule, toGroup: made[group.id] ?? "")
            }
        }
        return saved.map(\.name)
    }

    /// The start of the description of a group Lifeboat recreated.
    static let restoredMark = "Restored by Lifeboat. "
}
