import Foundation
import Logging
import OpenStack

/// The Cinder and Nova side of disk attachment: a point-in-time copy of each volume (a Cinder
/// snapshot, and a volume made from it), attached to the proxy server for reading, and removed
/// afterwards. Both are named `lifeboat-<backup>-<disk>` (`jobResourceName`), so a retry, the
/// cleanup or a rollback finds them by name, whatever an earlier attempt got to record.
///
/// Blocking (HTTP through libcurl): call it from blocking threads.
struct VolumeCopies: Sendable {
    let inventory: OpenStackInventory?

    private func clients() throws -> (NovaClient, CinderClient) {
        guard let inventory else {
            throw PermanentFailure("disk attachment needs OpenStack, which is not configured on this worker (LIFEBOAT_OPENSTACK_CLOUD)")
        }
        return (try NovaClient(session: inventory.session), try CinderClient(session: inventory.session))
    }

    /// Snapshots each volume (forced: it may be in use), unless an earlier attempt did, and
    /// waits until every snapshot is taken: the volumes' point in time.
    func snapshot(backup: String, _ volumes: [AttachedVolume]) throws -> [AttachedVolume] {
        let (_, cinder) = try clients()
        let taken = try volumes.map { volume -> AttachedVolume in
            let name = jobResourceName(job: backup, disk: volume.disk)
            var made = volume
            if let kept = try cinder.snapshots(allProjects: true, filters: ["name": name]).first {
                guard kept.status == "error" else {
                    made.snapshotID = kept.id
                    return made
                }
                // Cinder gave up on it: make another.
                try cinder.deleteSnapshot(kept.id)
                try cinder.waitForSnapshotDeletion(kept.id)
            }
            do {
                made.snapshotID = try cinder.createSnapshot(ofVolume: volume.volumeID, name: name,
                                                            description: "Lifeboat backup \(backup), disk \(volume.disk)", force: true).id
            } catch let error as HTTPError where error.statusCode == 404 {
                throw PermanentFailure("disk \(volume.disk): Cinder has no volume \(volume.volumeID)")
            }
            return made
        }
        for volume in taken { try cinder.waitForSnapshot(volume.snapshotID!) }
        return taken
    }

    /// Makes a volume from each snapshot, unless an earlier attempt did, and waits until each
    /// is available (or already attached).
    func clone(backup: String, _ volumes: [AttachedVolume]) throws -> [AttachedVolume] {
        let (_, cinder) = try clients()
        let cloned = try volumes.map { volume -> AttachedVolume in
            guard let snapshotID = volume.snapshotID else { throw TaskFailure("disk \(volume.disk) has no snapshot to make a volume from") }
            let name = jobResourceName(job: backup, disk: volume.disk)
            var made = volume
            made.cloneID = try cinder.volumes(allProjects: true, filters: ["name": name]).first?.id
                ?? cinder.createVolume(fromSnapshot: snapshotID, size: try cinder.snapshot(snapshotID).size, name: name).id
            return made
        }
        for volume in cloned where try cinder.volume(volume.cloneID!).status != "in-use" { try cinder.waitForVolume(volume.cloneID!) }
        return cloned
    }

    /// Attaches each copy to the proxy server (those not attached yet) and waits until Cinder
    /// has them in use; returns the proxy as Nova describes it (its host and domain).
    func attach(_ volumes: [AttachedVolume], to proxyID: String) throws -> Server {
        let (nova, cinder) = try clients()
        let proxy: Server
        do {
            proxy = try nova.server(proxyID)
        } catch let error as HTTPError where error.statusCode == 404 {
            throw PermanentFailure("the proxy server \(proxyID) (LIFEBOAT_ATTACHMENT_PROXY) does not exist")
        }
        let attached = Set(try nova.volumeAttachments(ofServer: proxy.id).map(\.volumeID))
        let clones = try volumes.map { volume -> String in
            guard let clone = volume.cloneID else { throw TaskFailure("disk \(volume.disk) has no volume to attach") }
            return clone
        }
        for clone in clones where !attached.contains(clone) { _ = try nova.attachVolume(clone, toServer: proxy.id) }
        for clone in clones { try cinder.waitForVolume(clone, status: "in-use") }
        return proxy
    }

    /// Detaches and deletes a backup's volume copies, then deletes its snapshots; whatever is
    /// gone already is skipped, so it can run any number of times.
    func release(_ release: AttachmentRelease) throws {
        let (nova, cinder) = try clients()
        let names = release.disks.map { jobResourceName(job: release.backupId, disk: $0) }
        let clones = try names.flatMap { try cinder.volumes(allProjects: true, filters: ["name": $0]) }
        for clone in clones {
            if clone.status == "attaching" || clone.status == "detaching" {
                throw TaskFailure("volume \(clone.id) is still \(clone.status): released on the next attempt")
            }
            for server in Set(clone.attachments.compactMap(\.serverID)) { _ = try nova.detachVolume(clone.id, fromServer: server) }
        }
        for clone in clones {
            if !clone.attachments.isEmpty { try cinder.waitForVolume(clone.id, timeout: 120) }
            try cinder.deleteVolume(clone.id)
        }
        for clone in clones { try cinder.waitForVolumeDeletion(clone.id) }
        // A snapshot cannot go before the volume made from it has.
        let snapshots = try names.flatMap { try cinder.snapshots(allProjects: true, filters: ["name": $0]) }
        for snapshot in snapshots { try cinder.deleteSnapshot(snapshot.id) }
        for snapshot in snapshots { try cinder.waitForSnapshotDeletion(snapshot.id) }
    }
}
