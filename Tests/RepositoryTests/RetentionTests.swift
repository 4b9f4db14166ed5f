import Foundation
import XCTest
@testable import Repository

final class RetentionTests: XCTestCase {
    /// 2026-03-01 00:00 UTC, a Sunday.
    let base = Date(timeIntervalSince1970: 1_772_323_200)
    let hour: TimeInterval = 3600
    let day: TimeInterval = 86400

    private func candidates(_ offsets: [TimeInterval]) -> [RetentionCandidate] {
        offsets.enumerated().map { RetentionCandidate(id: "b\($0.offset)", createdAt: base.addingTimeInterval($0.element)) }
    }

    func testKeepLast() {
        let backups = candidates((0..<10).map { Double($0) * hour })
        let decision = RetentionPolicy(keepLast: 3).apply(to: backups, now: base.addingTimeInterval(20 * day))
        XCTAssertEqual(Set(decision.keep.keys), ["b9", "b8", "b7"])
        XCTAssertEqual(decision.remove.count, 7)
    }

    func testKeepDailyKeepsNewestOfEachDay() {
        // Three backups a day for five days.
        let backups = candidates((0..<15).map { Double($0 / 3) * day + Double($0 % 3) * 6 * hour })
        let decision = RetentionPolicy(keepDaily: 3).apply(to: backups, now: base.addingTimeInterval(10 * day))
        XCTAssertEqual(Set(decision.keep.keys), ["b14", "b11", "b8"])
    }

    func testKeepWeeklyAndMonthly() {
        // One backup a day for 70 days from Sunday 2026-03-01.
        let backups = candidates((0..<70).map { Double($0) * day })
        let weekly = RetentionPolicy(keepWeekly: 2).apply(to: backups, now: base.addingTimeInterval(80 * day))
        // Day 69 is Saturday 2026-05-09 (ISO week ends Sunday): newest of its week, then Sunday day 63.
        XCTAssertEqual(Set(weekly.keep.keys), ["b69", "b63"])
        let monthly = RetentionPolicy(keepMonthly: 3).apply(to: backups, now: base.addingTimeInterval(80 * day))
        // Last backups of May (day 69), April 30 (day 60) and March 31 (day 30).
        XCTAssertEqual(Set(monthly.keep.keys), ["b69", "b60", "b30"])
    }

    func testKeepWithin() {
        let backups = candidates((0..<10).map { Double($0) * day })
        let decision = RetentionPolicy(keepWithin: 2.5 * day).apply(to: backups, now: base.addingTimeInterval(9 * day))
        XCTAssertEqual(Set(decision.keep.keys), ["b9", "b8", "b7"])
    }

    func testRulesCombineAsUnion() {
        let backups = candidates((0..<40).map { Double($0) * day })
        let decision = RetentionPolicy(keepLast: 2, keepMonthly: 2, keepWithin: 0.5 * day)
            .apply(to: backups, now: base.addingTimeInterval(39 * day))
        XCTAssertEqual(Set(decision.keep.keys), ["b39", "b38", "b30"])
        XCTAssertEqual(decision.keep["b39"]?.count, 3, "kept by last, monthly and within")
        XCTAssertEqual(decision.remove.count, 37)
    }

    func testPruneRemovesManifestsAndRefusesEmptyPolicy() throws {
        let scratch = ScratchDirectory()
        let repo = try Repository.create(path: scratch.file("repo"), options: RepositoryOptions(chunkSize: 64 * 1024))
        for i in 0..<4 {
            let image = scratch.file("img")
            try writeFile(image, textBytes(100_000, seed: UInt64(i)))
            try repo.beginBackup("b\(i)")
            try repo.backupRange(of: image, backup: "b\(i)", disk: "vda", offset: 0, length: 100_000)
            try repo.commitBackup("b\(i)", disks: [DiskLayout(name: "vda", size: 100_000)],
                                  createdAt: base.addingTimeInterval(Double(i) * day))
        }
        XCTAssertThrowsError(try repo.prune(policy: RetentionPolicy())) { error in
            XCTAssertEqual(error as? RepositoryError, .emptyRetentionPolicy)
        }
        let decision = try repo.prune(policy: RetentionPolicy(keepLast: 2), now: base.addingTimeInterval(5 * day))
        XCTAssertEqual(decision.remove, ["b1", "b0"])
        XCTAssertEqual(try repo.listBackups().map(\.id), ["b2", "b3"])
    }
}
