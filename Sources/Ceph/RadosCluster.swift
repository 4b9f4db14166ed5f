import CRBD
import Foundation

/// A connection to one Ceph cluster (librados), owner of the C handle: shut down when the last
/// reference goes.
///
/// librados is thread-safe and one connection serves any number of images and threads, so a
/// worker keeps one per cluster (`CephClusterDirectory`). Every call blocks on the network:
/// call them from blocking threads, never from Swift's cooperative pool.
public final class RadosCluster: @unchecked Sendable {
    let cluster: rados_t
    public let name: String

    /// Connects as `user` (the cephx id without `client.`, what cinder.conf calls `rbd_user`)
    /// with a ceph.conf (`rbd_ceph_conf`), a keyring, and further options (timeouts) that
    /// override the file's.
    public init(name: String, configurationFile: String?, user: String, keyring: String?,
                options: [String: String] = [:]) throws(CephError) {
        var handle: rados_t?
        try check(rados_create(&handle, user), "creating a Ceph client for client.\(user)")
        guard let handle else { throw CephError("creating a Ceph client for client.\(user)", code: -ENOMEM) }
        cluster = handle
        self.name = name
        // Fully initialised from here: a throw runs deinit, which shuts the handle down.
        if let configurationFile { try check(rados_conf_read_file(cluster, configurationFile), "reading \(configurationFile)") }
        if let keyring { try check(rados_conf_set(cluster, "keyring", keyring), "setting the keyring") }
        for (option, value) in options.sorted(by: { $0.key < $1.key }) {
            try check(rados_conf_set(cluster, option, value), "setting \(option)")
        }
        try check(rados_connect(cluster), "connecting to Ceph cluster \(name) as client.\(user)")
    }

    deinit {
        rados_shutdown(cluster)
    }

    /// The cluster's fsid: which cluster a backup's images came from.
    public func fsid() throws(CephError) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        try check(rados_cluster_fsid(cluster, &buffer, buffer.count), "reading the fsid of \(name)")
        return cString(buffer)
    }

    /// An I/O context on `pool`.
    public func pool(_ pool: String) throws(CephError) -> RadosPool {
        var io: rados_ioctx_t?
        try check(rados_ioctx_create(cluster, pool, &io), "opening pool \(pool) of \(name)")
        guard let io else { throw CephError("opening pool \(pool)", code: -ENOMEM) }
        return RadosPool(cluster: self, io: io, name: pool)
    }

    /// librbd's version, e.g. (1, 16, 0) for Ceph 16.
    public static var rbdVersion: (major: Int, minor: Int, extra: Int) {
        var major: Int32 = 0, minor: Int32 = 0, extra: Int32 = 0
        rbd_version(&major, &minor, &extra)
        return (Int(major), Int(minor), Int(extra))
    }
}

/// A pool of one cluster (a librados I/O context); keeps its cluster alive.
public final class RadosPool: @unchecked Sendable {
    let io: rados_ioctx_t
    public let cluster: RadosCluster
    public let name: String

    init(cluster: RadosCluster, io: rados_ioctx_t, name: String) {
        self.cluster = cluster
        self.io = io
        self.name = name
    }

    deinit {
        rados_ioctx_destroy(io)
    }

    /// The RBD images in the pool.
    public func imageNames() throws(CephError) -> [String] {
        var capacity = 64
        while true {
            var specs = [rbd_image_spec_t](repeating: rbd_image_spec_t(), count: capacity)
            let result = rbd_list2(io, &specs, &capacity)
            if result == -ERANGE { continue }
            try check(result, "listing images in \(name)")
            defer { rbd_image_spec_list_cleanup(&specs, capacity) }
            return specs.prefix(capacity).map { String(cString: $0.name) }
        }
    }

    public func imageExists(_ image: String) throws(CephError) -> Bool {
        try openImage(image, readOnly: true) != nil
    }

    /// Opens `image` (at `snapshot`), or nil when the image or the snapshot does not exist.
    public func openImage(_ image: String, snapshot: String? = nil, readOnly: Bool) throws(CephError) -> RBDImage? {
        do throws(CephError) {
            return try RBDImage(pool: self, name: image, snapshot: snapshot, readOnly: readOnly)
        } catch where error.isNotFound {
            return nil
        }
    }

    /// Creates an image with the cluster's default features and object size.
    public func createImage(_ image: String, size: UInt64) throws(CephError) {
        var options: rbd_image_options_t?
        rbd_image_options_create(&options)
        defer { rbd_image_options_destroy(options) }
        try check(rbd_create4(io, image, size, options), "creating image \(name)/\(image)")
    }

    /// Removes an image (it must have no snapshots).
    public func removeImage(_ image: String) throws(CephError) {
        try check(rbd_remove(io, image), "removing image \(name)/\(image)")
    }

    public func renameImage(_ image: String, to newName: String) throws(CephError) {
        try check(rbd_rename(io, image, newName), "renaming image \(name)/\(image) to \(newName)")
    }
}
