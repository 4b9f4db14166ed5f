import Foundation
import SSH

/// The hypervisors a worker may reach, read from the operator's JSON file
/// (`LIFEBOAT_HYPERVISORS`). Requests name a hypervisor by its `name` here, never by address:
/// a message must not be able to send the worker's SSH key to a host of its choosing.
///
/// ```json
/// {"hypervisors": [{"name": "kvm-1", "address": "10.0.0.11", "user": "root",
///                   "privateKeyFile": "/etc/lifeboat/ssh/id_ed25519",
///                   "knownHostsFile": "/etc/lifeboat/ssh/known_hosts"}]}
/// ```
/// A `"guests"` list of the same shape (its `name` a domain's) gives guests whose
/// `preSnapshotCommand`/`postSnapshotCommand` run inside them over SSH, for application
/// consistency (flush a database, freeze a file system).
///
/// Optional per host: `port` (22), `passwordFile` (instead of a key), `passphraseFile`,
/// `trustOnFirstUse` (false), `libvirtURI` (`qemu:///system`), `preSnapshotCommand` and
/// `postSnapshotCommand` (run on the hypervisor around the snapshot, with `LIFEBOAT_DOMAIN`
/// set), `changedBlocks` (`overlay` or `bitmap`), `dataPath` (`ssh` or `tcp`), `connectTimeoutSeconds` (10),
/// `operationTimeoutSeconds` (60), `cephCluster` (where the domains' RBD disks live).
public struct HypervisorDirectory: Sendable {
    public struct Entry: Sendable, Decodable {
        public var name: String
        public var address: String
        public var port: Int?
        public var user: String
        public var privateKeyFile: String?
        public var passphraseFile: String?
        public var passwordFile: String?
        public var knownHostsFile: String
        public var trustOnFirstUse: Bool?
        public var libvirtURI: String?
        public var preSnapshotCommand: String?
        public var postSnapshotCommand: String?
        /// How incrementals find what changed: `overlay` (the default: the overlay kept since the
        /// last backup) or `bitmap` (QEMU dirty bitmaps through libvirt checkpoints and push-mode
        /// backups; qcow2 disks, libvirt ≥ 7.2, leaves no overlay behind).
        public var changedBlocks: String?
        /// `ssh` (the default) or `tcp`: disk data over a plain TCP connection from the
        /// hypervisor to the worker (`DataListener`), unencrypted — trusted backup networks only.
        public var dataPath: String?
        public var connectTimeoutSeconds: Double?
        public var operationTimeoutSeconds: Double?
        /// The Ceph cluster (a name in `LIFEBOAT_CEPH_CLUSTERS`) whose RBD images this host's
        /// domains use as network disks (Cinder RBD volumes, Nova `images_type = rbd`): those
        /// disks are snapshotted and read through librbd in the same job as the file disks.
        public var cephCluster: String?
    }

    public private(set) var entries: [String: Entry] = [:]
    private var endpoints: [String: SSHEndpoint] = [:]
    /// Guests whose pre/post snapshot commands run inside them over SSH, by domain name (an
    /// entry of the same shape, under `"guests"`, its `name` the domain's).
    public private(set) var guests: [String: (entry: Entry, endpoint: SSHEndpoint)] = [:]

    public init() {}

    public init(contentsOf path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw HypervisorDirectoryError("cannot read the hypervisor list \(path): \(error.localizedDescription)")
        }
        struct File: Decodable {
            var hypervisors: [Entry]
            var guests: [Entry]?
        }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: data)
        } catch {
            throw HypervisorDirectoryError("the hypervisor list \(path) is not valid: \(error)")
        }
        for entry in file.hypervisors {
            if let mode = entry.changedBlocks, !["overlay", "bitmap"].contains(mode) {
                throw HypervisorDirectoryError("\(path): hypervisor \(entry.name): changedBlocks must be \"overlay\" or \"bitmap\", not \"\(mode)\"")
            }
            if let path = entry.dataPath, !["ssh", "tcp"].contains(path) {
                throw HypervisorDirectoryError("hypervisor \(entry.name): dataPath must be \"ssh\" or \"tcp\", not \"\(path)\"")
            }
            guard entries[entry.name] == nil else { throw HypervisorDirectoryError("\(path): hypervisor \(entry.name) is listed twice") }
            endpoints[entry.name] = try Self.endpoint(entry, in: path)
            entries[entry.name] = entry
        }
        for guest in file.guests ?? [] {
            guard guests[guest.name] == nil else { throw HypervisorDirectoryError("\(path): guest \(guest.name) is listed twice") }
            guests[guest.name] = (guest, try Self.endpoint(guest, in: path))
        }
    }

    /// Runs a guest's configured command inside it over SSH (its host key verified like a
    /// hypervisor's), with `LIFEBOAT_DOMAIN` set. Nothing happens for a guest not listed.
    public func runInGuest(_ domain: String, _ command: KeyPath<Entry, String?>) throws {
        guard let guest = guests[domain], let text = guest.entry[keyPath: command] else { return }
        let session = try SSHSession(connectingTo: guest.endpoint)
        let line = Shell.command(["env", "LIFEBOAT_DOMAIN=\(domain)", "sh", "-c", text])
        _ = try session.run(line).check("\(domain): \(text)")
    }

    /// The names, sorted: what an error lists when a request names an unknown one.
    public var names: [String] { entries.keys.sorted() }

    public func endpoint(_ name: String) throws -> SSHEndpoint {
        guard let endpoint = endpoints[name] else {
            throw HypervisorDirectoryError("hypervisor \"\(name)\" is not configured on this worker (LIFEBOAT_HYPERVISORS lists: "
                                           + (names.isEmpty ? "none" : names.joined(separator: ", ")) + ")")
        }
        return endpoint
    }

    /// Logs in to hypervisor `name` over SSH (verifying its host key) and returns it ready to drive.
    /// Blocks: call it on a thread of its own.
    public func connect(_ name: String) throws -> Hypervisor {
        let endpoint = try endpoint(name)
        let session = try SSHSession(connectingTo: endpoint)
        return Hypervisor(name: name, shell: SSHShell(session: session), uri: entries[name]?.libvirtURI ?? "qemu:///system",
                          hostKeyFingerprint: session.hostKeyFingerprint,
                          fastPathAddress: entries[name]?.dataPath == "tcp" ? session.localAddress : nil)
    }

    private static func endpoint(_ entry: Entry, in path: String) throws -> SSHEndpoint {
        func secret(_ file: String) throws -> String {
            do {
                return try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .newlines)
            } catch {
                throw HypervisorDirectoryError("hypervisor \(entry.name): cannot read \(file): \(error.localizedDescription)")
            }
        }
        let authentication: SSHAuthentication
        switch (entry.privateKeyFile, entry.passwordFile) {
        case (let key?, nil): authentication = .publicKey(privateKeyFile: key, passphrase: try entry.passphraseFile.map(secret))
        case (nil, let password?): authentication = .password(try secret(password))
        default: throw HypervisorDirectoryError("\(path): hypervisor \(entry.name) needs exactly one of privateKeyFile and passwordFile")
        }
        return SSHEndpoint(host: entry.address, port: entry.port ?? 22, user: entry.user, authentication: authentication,
                           knownHostsFile: entry.knownHostsFile, trustOnFirstUse: entry.trustOnFirstUse ?? false,
                           connectTimeoutSeconds: entry.connectTimeoutSeconds ?? 10,
                           operationTimeoutSeconds: entry.operationTimeoutSeconds ?? 60)
    }
}

public struct HypervisorDirectoryError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
