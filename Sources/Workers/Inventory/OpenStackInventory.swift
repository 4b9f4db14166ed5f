import Foundation
import Logging
import OpenStack
import Synchronization

/// The cloud as a worker sees it, through Lifeboat's own Keystone account (`LIFEBOAT_OPENSTACK_CLOUD`,
/// an admin of the cloud: host names, instance names and other users' key pairs are admin-only):
/// where a Nova server's disks are, and everything a restore needs to recreate the server.
///
/// Blocking (HTTP through libcurl): call it from blocking threads.
struct OpenStackInventory: Sendable {
    let session: KeystoneSession
    private let projectSessions = ProjectSessions()

    init(configuration: CloudConfiguration, logger: Logger) {
        session = KeystoneSession(configuration: configuration, logger: logger)
    }

    /// Lifeboat's account scoped to `project` (kept: one login per project), for what a restore
    /// creates there. Its user needs a role in that project.
    func session(inProject project: String) -> KeystoneSession {
        if project == session.configuration.projectID { return session }
        return projectSessions.sessions.withLock { sessions in
            if let kept = sessions[project] { return kept }
            let scoped = session.scoped(toProject: project)
            sessions[project] = scoped
            return scoped
        }
    }

    private final class ProjectSessions: Sendable {
        let sessions = Mutex<[String: KeystoneSession]>([:])
    }

    /// The server, or nil when Nova does not know it.
    func server(_ id: String) throws -> Server? {
        do {
            return try NovaClient(session: session).server(id)
        } catch let error as HTTPError where error.statusCode == 404 {
            return nil
        }
    }

    /// What is saved with a backup of `server`. Each part is read as the admin: the key pair
    /// through the admin API with the owner's user id (Nova microversion 2.10), which tools that
    /// read it as the backup user cannot do for key pairs other users created.
    func record(of server: Server) throws -> InstanceRecord {
        let nova = try NovaClient(session: session)
        var record = InstanceRecord(server: server, exportedAt: Date().timeIntervalSince1970)
        record.flavor = try? nova.flavor(server.flavor.id ?? "")
        if let name = server.keyName {
            let pair = try nova.keyPair(named: name, userID: server.userID)
            record.keyPair = InstanceRecord.KeyPairRecord(name: pair.name, publicKey: pair.publicKey, type: pair.type, fingerprint: pair.fingerprint,
                                                         userID: pair.userID ?? server.userID)
        }
        if !server.attachedVolumes.isEmpty {
            let cinder = try CinderClient(session: session)
            record.volumes = try server.attachedVolumes.map { try cinder.volume($0.id) }
        }
        let neutron = try NeutronClient(session: session)
        record.ports = try neutron.ports(ofDevice: server.id)
        record.networks = try Set(record.ports.map(\.networkID)).sorted().map { try neutron.network($0) }
        let groups = try neutron.securityGroups(projectID: server.projectID)
        let wanted = Set(server.securityGroups + record.ports.flatMap(\.securityGroups))
        record.securityGroups = groups.filter { wanted.contains($0.name) || wanted.contains($0.id) }
        if let image = server.imageID, !image.isEmpty {
            record.image = try? GlanceClient(session: session).image(image)
        }
        return record
    }
}

/// A Nova server as it was at backup time, with its flavor, key pair (public key only),
/// volumes, ports, networks, security groups and image: saved with each backup so that a
/// restore can recreate the instance even after the originals are gone.
struct InstanceRecord: Codable, Sendable, Equatable {
    struct KeyPairRecord: Codable, Sendable, Equatable {
        var name: String
        var publicKey: String
        var type: String?
        var fingerprint: String?
        /// Who owns it: a restore recreates it for that user when it is missing.
        var userID: String?
    }

    var server: Server
    var flavor: Flavor? = nil
    var keyPair: KeyPairRecord? = nil
    var volumes: [Volume] = []
    var ports: [OpenStack.Port] = []
    var networks: [OpenStack.Network] = []
    var securityGroups: [SecurityGroup] = []
    var image: OpenStack.Image? = nil
    var exportedAt: Double
}
