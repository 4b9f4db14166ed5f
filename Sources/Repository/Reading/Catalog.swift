/// Reading what is committed: manifests and the indexes they name.
extension Repository {
    /// The manifest of a committed backup.
    public func manifest(_ backup: String) throws -> BackupManifest {
        try ObjectNames.validate(backup)
        let name = ObjectNames.manifest(backup)
        do {
            return try JSONCoding.decode(BackupManifest.self, from: try getObject(name), name: name)
        } catch RepositoryError.objectNotFound {
            throw RepositoryError.backupNotFound(backup)
        }
    }

    /// Every committed backup, oldest first. In-progress and crashed backups never appear.
    public func listBackups() throws -> [BackupManifest] {
        var manifests: [BackupManifest] = []
        for object in try backend.list(prefix: ObjectNames.backups) {
            do {
                manifests.append(try manifest(ObjectNames.leaf(object.name)))
            } catch RepositoryError.backupNotFound {
                continue // pruned while listing
            }
        }
        return manifests.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    /// The chunk index of one disk of a committed backup.
    func index(backup: String, disk: String) throws -> DiskIndex {
        let manifest = try manifest(backup)
        guard manifest.disks.contains(where: { $0.name == disk }) else {
            throw RepositoryError.diskNotFound(backup: backup, disk: disk)
        }
        return try readIndex(backup: backup, disk: disk)
    }
}

extension Repository {
    /// Calls `body` with every disk index of every committed backup: the one walk behind
    /// verify, stats and garbage collection. A committed backup whose index cannot be read
    /// is an error, never skipped: GC must not mistake unknown references for none.
    func forEachCommittedIndex(_ body: (BackupManifest, DiskIndex, String) throws -> Void) throws {
        for manifest in try listBackups() {
            for disk in manifest.disks {
                try body(manifest, try readIndex(backup: manifest.id, disk: disk.name), disk.name)
            }
        }
    }
}
