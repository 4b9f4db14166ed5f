import Foundation

/// Cinder's block-storage API (v3): volumes, snapshots, volumes from snapshots, and the pools
/// volumes live in. Requests use the base microversion 3.0, whose answers carry everything
/// here.
public struct CinderClient: Sendable {
    let api: ServiceConnection

    /// Finds Cinder in the catalog (`volumev3`, else `block-storage`), or uses `endpoint`
    /// (the project's v3 URL, `http://host:8776/v3/<project>`).
    public init(session: KeystoneSession, interface: String? = nil, region: String? = nil, endpoint: URL? = nil) throws {
        let base: URL
        if let endpoint {
            base = endpoint
        } else {
            do { base = try session.endpoint(for: "volumev3", interface: interface, region: region) } catch OpenStackError.endpointNotFound {
                base = try session.endpoint(for: "block-storage", interface: interface, region: region)
            }
        }
        api = ServiceConnection(session: session, service: "Cinder", base: base)
    }

    // MARK: Volumes

    public func volume(_ id: String) throws -> Volume {
        struct Envelope: Decodable { let volume: Volume }
        return try api.get("/volumes/\(QueryString.segment(id))", as: Envelope.self).volume
    }

    /// Volumes with details, every page; `allProjects` (admin) lists every project's.
    public func volumes(allProjects: Bool = false, filters: [String: String] = [:]) throws -> [Volume] {
        struct Page: Decodable {
            let volumes: [Volume]
            let volumes_links: [Link]?
        }
        var query: [(String, String?)] = filters.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        if allProjects { query.append(("all_tenants", "1")) }
        var url = try api.url("/volumes/detail", query)
        var volumes: [Volume] = []
        while true {
            let page = try api.send(HTTPRequest(.get, url, headers: api.headers), as: Page.self)
            volumes += page.volumes
            guard let next = page.volumes_links?.first(where: { $0.rel == "next" }), !page.volumes.isEmpty else { return volumes }
            url = try api.follow(next.href)
        }
    }

    /// Creates a volume (status `creating`; see `waitForVolume`).
    public func createVolume(_ request: VolumeCreateRequest) throws -> Volume {
        struct Body: Encodable { let volume: VolumeCreateRequest }
        struct Envelope: Decodable { let volume: Volume }
        return try api.send(try api.request(.post, "/volumes", json: Body(volume: request)), as: Envelope.self).volume
    }

    /// A new volume holding `snapshotID`'s data (at least the snapshot's size).
    public func createVolume(fromSnapshot snapshotID: String, size: Int, name: String? = nil, volumeType: String? = nil) throws -> Volume {
        try createVolume(VolumeCreateRequest(size: size, name: name, volumeType: volumeType, snapshotID: snapshotID))
    }

    /// Marks a volume bootable (or not): Nova boots only from a bootable volume.
    public func setBootable(_ id: String, _ bootable: Bool = true) throws {
        struct Body: Encodable {
            struct Inner: Encodable { let bootable: Bool }
            let action: Inner
            enum CodingKeys: String, CodingKey { case action = "os-set_bootable" }
        }
        try api.send(try api.request(.post, "/volumes/\(QueryString.segment(id))/action", json: Body(action: .init(bootable: bootable))))
    }

    /// Deletes a volume (asynchronously); `cascade` deletes its snapshots too. False when it
    /// was gone already.
    @discardableResult
    public func deleteVolume(_ id: String, cascade: Bool = false) throws -> Bool {
        try api.delete("/volumes/\(QueryString.segment(id))", cascade ? [("cascade", "true")] : [])
    }

    /// Waits until the volume is `status` (available by default); fails on an error status.
    @discardableResult
    public func waitForVolume(_ id: String, status: String = "available", timeout: Double = 300) throws -> Volume {
        try StatusWait.until(kind: "volume", id: id, wanted: [status], failing: ["error", "error_deleting", "error_restoring", "error_extending"],
                             timeout: timeout) {
            let volume = try volume(id)
            return .init(value: volume, status: volume.status)
        }
    }

    public func waitForVolumeDeletion(_ id: String, timeout: Double = 300) throws {
        try StatusWait.untilGone(kind: "volume", id: id, failing: ["error_deleting"], timeout: timeout) {
            try statusOrGone { try volume(id).status }
        }
    }

    // MARK: Snapshots

    public func snapshot(_ id: String) throws -> VolumeSnapshot {
        struct Envelope: Decodable { let snapshot: VolumeSnapshot }
        return try api.get("/snapshots/\(QueryString.segment(id))", as: Envelope.self).snapshot
    }

    /// Snapshots with details (one page: filter them, e.g. by `name`); `allProjects` (admin)
    /// lists every project's.
    public func snapshots(allProjects: Bool = false, filters: [String: String] = [:]) throws -> [VolumeSnapshot] {
        struct Page: Decodable { let snapshots: [VolumeSnapshot] }
        var query: [(String, String?)] = filters.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        if allProjects { query.append(("all_tenants", "1")) }
        return try api.get("/snapshots/detail", query, as: Page.self).snapshots
    }

    /// Snapshots a volume; `force` allows it while the volume is attached (in-use).
    public func createSnapshot(ofVolume volumeID: String, name: String? = nil, description: String? = nil, force: Bool = false) throws -> VolumeSnapshot {
        struct Body: Encodable {
            struct Inner: Encodable { let volume_id: String; let name: String?; let description: String?; let force: Bool }
            let snapshot: Inner
        }
        struct Envelope: Decodable { let snapshot: VolumeSnapshot }
        let body = Body(snapshot: .init(volume_id: volumeID, name: name, description: description, force: force))
        return try api.send(try api.request(.post, "/snapshots", json: body), as: Envelope.self).snapshot
    }

    /// Deletes a snapshot (asynchronously); false when it was gone already.
    @discardableResult
    public func deleteSnapshot(_ id: String) throws -> Bool {
        try api.delete("/snapshots/\(QueryString.segment(id))")
    }

    @discardableResult
    public func waitForSnapshot(_ id: String, status: String = "available", timeout: Double = 300) throws -> VolumeSnapshot {
        try StatusWait.until(kind: "snapshot", id: id, wanted: [status], failing: ["error", "error_deleting"], timeout: timeout) {
            let snapshot = try snapshot(id)
            return .init(value: snapshot, status: snapshot.status)
        }
    }

    public func waitForSnapshotDeletion(_ id: String, timeout: Double = 300) throws {
        try StatusWait.untilGone(kind: "snapshot", id: id, failing: ["error_deleting"], timeout: timeout) {
            try statusOrGone { try snapshot(id).status }
        }
    }

    // MARK: Back ends

    /// The scheduler's pools with their capabilities (admin).
    public func pools() throws -> [StoragePool] {
        struct Envelope: Decodable { let pools: [StoragePool] }
        return try api.get("/scheduler-stats/get_pools", [("detail", "true")], as: Envelope.self).pools
    }

    /// The pool a volume lives in (admin: both the volume's host and the pools need it).
    public func pool(of volume: Volume) throws -> StoragePool? {
        guard let host = volume.host else { return nil }
        return try pools().first { $0.name == host }
    }
}
