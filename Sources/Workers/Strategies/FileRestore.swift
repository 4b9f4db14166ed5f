import AMQP
import Events
import Foundation
import Publisher
import Repository

/// Restores to image files in a directory on the worker's host, range by range: every range
/// task writes its chunks into `<disk>.partial-<job>` (raw, sparse) and leaves a marker; the one that
/// finds all ranges written asks for `restore-finalize`, which converts to qcow2 if asked and
/// renames, so a file appears under its name only whole.
struct FileRestore: Sendable {
    let repository: Repository

    static func file(_ directory: String, _ disk: String, _ format: DiskFormat?) -> String {
        "\(directory)/\(disk).\(format == .qcow2 ? "qcow2" : "img")"
    }

    /// Named by the job: another (failed) restore's partial file holds other bytes, and ranges
    /// write only non-zero chunks, so it must never be reused.
    private static func partial(_ directory: String, _ disk: String, job: JobReference) -> String {
        "\(directory)/\(disk).partial-\(job.jobId)"
    }

    /// Range markers of one job: `<directory>/.lifeboat-restore-<job>/<disk>.<offset>`.
    private static func markers(_ directory: String, job: JobReference) -> String { "\(directory)/.lifeboat-restore-\(job.jobId)" }

    func restore(_ task: TaskEvent, plan: RestorePlan, directory: String, disk: String, range: ByteRange) async throws -> [OutgoingMessage] {
        let repository = self.repository
        let complete = try await runBlocking { () -> Bool in
            let markers = Self.markers(directory, job: task.job)
            try FileManager.default.createDirectory(atPath: markers, withIntermediateDirectories: true)
            if !FileManager.default.fileExists(atPath: Self.file(directory, disk, plan.format)) {
                try repository.restoreRange(backup: plan.backupId, disk: disk, offset: range.offset, length: range.length,
                                            to: Self.partial(directory, disk, job: task.job))
                guard FileManager.default.createFile(atPath: "\(markers)/\(disk).\(range.offset)", contents: nil) else {
                    throw TaskFailure("cannot write the range marker in \(markers)")
                }
            }
            let done = (try? FileManager.default.contentsOfDirectory(atPath: markers)) ?? []
            return plan.disks.allSatisfy { disk in
                FileManager.default.fileExists(atPath: Self.file(directory, disk, plan.format))
                    || done.filter { $0.hasPrefix("\(disk).") }.count >= plan.rangeCount(of: disk)
            }
        }
        var messages: [OutgoingMessage] = [.result(JobResult(job: task.job, status: .progress,
                                                              task: TaskSummary(taskId: task.taskId, kind: .restore, disk: disk),
                                                              backupId: plan.backupId))]
        if complete {
            messages.append(.task(TaskEvent(taskId: "\(task.job.jobId).restore-finalize", job: task.job, kind: .restoreFinalize,
                                            parameters: task.parameters)))
        }
        return messages
    }

    /// Gives every disk's file its format and name (idempotent), and reports the job done.
    func finalize(_ task: TaskEvent, plan: RestorePlan, directory: String) async throws -> [OutgoingMessage] {
        let files = try await runBlocking { () -> [String] in
            try plan.disks.map { disk in
                let final = Self.file(directory, disk, plan.format), partial = Self.partial(directory, disk, job: task.job)
                if !FileManager.default.fileExists(atPath: final) {
                    if plan.format == .qcow2 {
                        let converting = final + ".converting"
                        try Repository.convertToQcow2(raw: partial, to: converting)
                        guard rename(converting, final) == 0 else { throw TaskFailure("cannot rename \(converting): \(String(cString: strerror(errno)))") }
                        unlink(partial)
                    } else {
                        guard rename(partial, final) == 0 else { throw TaskFailure("cannot rename \(partial): \(String(cString: strerror(errno)))") }
                    }
                }
                return final
            }
        }
        try? FileManager.default.removeItem(atPath: Self.markers(directory, job: task.job))
        return [.result(JobResult(job: task.job, status: .succeeded, backupId: plan.backupId, details: ["files": files.joined(separator: ", ")]))]
    }
}
