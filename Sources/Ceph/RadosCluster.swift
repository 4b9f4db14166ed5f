import CRBD
import Foundation

public enum CephError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A librados/librbd call failed; `code` is the negative errno it returned.
    case call(String, code: Int32)

    public var description: String {
        switch self {
        case .call(let what, let code): "\(what) failed: \(String(cString: strerror(-code))) (\(code))"
        }
    }
}

/// A handle on one Ceph cluster (librados), owner of the C resource: shut down when this goes away.
///
/// Not `Sendable`: librados calls block, so a handle belongs to the thread that drives it.
/// Images, snapshots, diffs and aio reads grow here with the RBD source.
public final class RadosCluster {
    let cluster: rados_t

    /// `clientId` is the cephx user without `client.` (what cinder.conf calls `rbd_user`).
    public init(clientId: String) throws(CephError) {
        var handle: rados_t?
        let result = rados_create(&handle, clientId)
        guard result == 0, let handle else { throw .call("rados_create", code: result) }
        cluster = handle
    }

    deinit {
        rados_shutdown(cluster)
    }

    /// Reads a ceph.conf (what cinder.conf calls `rbd_ceph_conf`).
    public func readConfiguration(path: String) throws(CephError) {
        let result = rados_conf_read_file(cluster, path)
        guard result == 0 else { throw .call("reading \(path)", code: result) }
    }

    public func set(_ option: String, to value: String) throws(CephError) {
        let result = rados_conf_set(cluster, option, value)
        guard result == 0 else { throw .call("setting \(option)", code: result) }
    }

    /// librbd's version, e.g. (1, 16, 0) for Ceph 16.
    public static var rbdVersion: (major: Int, minor: Int, extra: Int) {
        var major: Int32 = 0, minor: Int32 = 0, extra: Int32 = 0
        rbd_version(&major, &minor, &extra)
        return (Int(major), Int(minor), Int(extra))
    }
}
