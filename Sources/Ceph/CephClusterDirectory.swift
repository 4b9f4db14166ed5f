import Foundation
import Synchronization

/// The Ceph clusters a worker may reach ("storage providers"), read from the operator's JSON
/// file (`LIFEBOAT_CEPH_CLUSTERS`). Requests name a cluster by its `name` here; the keyring
/// never travels in a message.
///
/// ```json
/// {"clusters": [{"name": "ceph-1", "conf": "/etc/ceph/ceph.conf", "user": "lifeboat",
///                "keyring": "/etc/ceph/ceph.client.lifeboat.keyring",
///                "openstackBackends": {"ceph": "volumes"}}]}
/// ```
/// `conf`, `user` and `keyring` are what cinder.conf calls `rbd_ceph_conf`, `rbd_user` and the
/// user's keyring. Optional: `options` (Ceph client options that override the file's, e.g.
/// `rados_osd_op_timeout`), `readsInFlight` (8), `openstackBackends` (Cinder backends whose
/// volumes live here — the backend of `host@backend#pool`, or `host@backend` — each with the
/// RBD pool cinder.conf names as its `rbd_pool`: a restore as a new instance writes the
/// volumes it creates there, as `volume-<id>`. A domain's RBD disks are read through its
/// hypervisor's `cephCluster`.)
///
/// Connections are made on first use and kept: one librados connection per cluster serves
/// every task of the worker. A connection that timed out is dropped and made again.
public struct CephClusterDirectory: Sendable {
    public struct Entry: Sendable, Decodable {
        public var name: String
        public var conf: String?
        public var user: String
        public var keyring: String?
        public var options: [String: String]?
        public var readsInFlight: Int?
        public var openstackBackends: [String: String]?
    }

    /// Unless the operator sets them: client timeouts, so a dead cluster fails a task (which is
    /// then retried) instead of hanging it past RabbitMQ's consumer timeout; and librbd writing
    /// straight from Lifeboat's buffers instead of copying each write first. Zero-copy writes
    /// are safe here: librbd completes a write only once it holds no reference to the buffer,
    /// and `RBDAsyncWriter` reuses a buffer only after its completion. They need librbd's
    /// cache off, which a backup's reads (own readahead, each byte once) and a restore's writes
    /// (whole objects, flushed at the end) do not miss.
    public static let defaultOptions = ["client_mount_timeout": "30", "rados_mon_op_timeout": "30", "rados_osd_op_timeout": "120",
                                        "rbd_cache": "false", "rbd_disable_zero_copy_writes": "false"]

    public private(set) var entries: [String: Entry] = [:]
    private let connections = Connections()

    public init() {}

    public init(contentsOf path: String) throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CephConfigurationError("cannot read the Ceph cluster list \(path): \(error.localizedDescription)")
        }
        struct File: Decodable { var clusters: [Entry] }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: data)
        } catch {
            throw CephConfigurationError("the Ceph cluster list \(path) is not valid: \(error)")
        }
        for entry in file.clusters {
            guard entries[entry.name] == nil else { throw CephConfigurationError("\(path): cluster \(entry.name) is listed twice") }
            if let conf = entry.conf, !FileManager.default.isReadableFile(atPath: conf) {
                throw CephConfigurationError("\(path): cluster \(entry.name): cannot read its ceph.conf \(conf)")
            }
            entries[entry.name] = entry
        }
    }

    /// The entry named `name`, or the error a request naming an unknown cluster gets.
    public func entry(_ name: String) throws(CephConfigurationError) -> Entry {
        guard let entry = entries[name] else {
            throw CephConfigurationError(entries.isEmpty
                ? "Ceph is not configured on this worker (LIFEBOAT_CEPH_CLUSTERS names no cluster): it cannot read or write RBD images of cluster \(name)"
                : "no Ceph cluster named \(name) is configured (LIFEBOAT_CEPH_CLUSTERS has \(entries.keys.sorted().joined(separator: ", ")))")
        }
        return entry
    }

    /// The cluster and RBD pool of a Cinder volume service's `host@backend` (either form may be
    /// listed), or nil when no cluster lists it.
    public func cinderPool(host: String, backend: String?) -> (cluster: String, pool: String)? {
        let keys = [backend.map { "\(host)@\($0)" }, backend].compactMap { $0 }
        for key in keys {
            for entry in entries.values.sorted(by: { $0.name < $1.name }) {
                if let pool = entry.openstackBackends?[key] { return (entry.name, pool) }
            }
        }
        return nil
    }

    /// The kept connection to `name`, connecting first if there is none. Blocks.
    public func connect(_ name: String) throws -> RadosCluster {
        let entry = try entry(name)
        return try connections.get(name) {
            try RadosCluster(name: name, configurationFile: entry.conf, user: entry.user, keyring: entry.keyring,
                             options: Self.defaultOptions.merging(entry.options ?? [:]) { _, chosen in chosen })
        }
    }

    /// Drops the kept connection to `name` (after a timeout), so the next use makes a new one.
    public func forget(_ name: String) {
        connections.drop(name)
    }

    private final class Connections: Sendable {
        private let open = Mutex<[String: RadosCluster]>([:])
        /// Serialises connecting, so simultaneous tasks make one connection, not one each.
        private let connecting = Mutex<Void>(())

        func get(_ name: String, make: () throws -> RadosCluster) throws -> RadosCluster {
            if let cluster = open.withLock({ $0[name] }) { return cluster }
            return try connecting.withLock { _ in
                if let cluster = open.withLock({ $0[name] }) { return cluster }
                let cluster = try make()
                open.withLock { $0[name] = cluster }
                return cluster
            }
        }

        func drop(_ name: String) {
            _ = open.withLock { $0.removeValue(forKey: name) }
        }
    }
}

public struct CephConfigurationError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
