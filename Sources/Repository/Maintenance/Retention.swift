import Foundation

/// Which backups to keep. Rules combine: a backup is kept if any rule keeps it.
/// Counted rules work like restic's `forget`: newest first, `keepDaily: 7` keeps the newest
/// backup of each of the 7 most recent days that have a backup (days without one don't count).
public struct RetentionPolicy: Sendable, Equatable {
    public var keepLast: Int
    public var keepDaily: Int
    public var keepWeekly: Int
    public var keepMonthly: Int
    /// Keep every backup younger than this many seconds.
    public var keepWithin: TimeInterval?

    public init(keepLast: Int = 0, keepDaily: Int = 0, keepWeekly: Int = 0, keepMonthly: Int = 0,
                keepWithin: TimeInterval? = nil) {
        self.keepLast = keepLast
        self.keepDaily = keepDaily
        self.keepWeekly = keepWeekly
        self.keepMonthly = keepMonthly
        self.keepWithin = keepWithin
    }

    /// A policy with no rule would remove every backup; `prune` refuses it.
    public var keepsNothing: Bool {
        keepLast <= 0 && keepDaily <= 0 && keepWeekly <= 0 && keepMonthly <= 0 && (keepWithin ?? 0) <= 0
    }

    /// Decides for each backup. `calendar` sets the day, week (ISO weeks by default) and
    /// month boundaries, and their time zone (UTC by default).
    public func apply(to backups: [RetentionCandidate], now: Date = Date(),
                      calendar: Calendar = RetentionPolicy.utcCalendar) -> RetentionDecision {
        let newestFirst = backups.sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
        var reasons: [String: [String]] = [:]
        for (i, b) in newestFirst.enumerated() where i < keepLast {
            reasons[b.id, default: []].append("last \(keepLast)")
        }
        if let within = keepWithin {
            for b in newestFirst where now.timeIntervalSince(b.createdAt) < within {
                reasons[b.id, default: []].append("within \(Int(within))s")
            }
        }
        let buckets: [(count: Int, label: String, components: Set<Calendar.Component>)] = [
            (keepDaily, "daily", [.year, .month, .day]),
            (keepWeekly, "weekly", [.yearForWeekOfYear, .weekOfYear]),
            (keepMonthly, "monthly", [.year, .month]),
        ]
        for rule in buckets where rule.count > 0 {
            var lastBucket: DateComponents?
            var kept = 0
            for b in newestFirst {
                let bucket = calendar.dateComponents(rule.components, from: b.createdAt)
                guard bucket != lastBucket else { continue }
                lastBucket = bucket
                reasons[b.id, default: []].append("\(rule.label) \(rule.count)")
                kept += 1
                if kept == rule.count { break }
            }
        }
        let remove = newestFirst.filter { reasons[$0.id] == nil }.map(\.id)
        return RetentionDecision(keep: reasons, remove: remove)
    }

    public static var utcCalendar: Calendar {
        var calendar = Calendar(identifier: .iso8601)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }
}

/// A backup as retention sees it.
public struct RetentionCandidate: Sendable, Equatable {
    public let id: String
    public let createdAt: Date

    public init(id: String, createdAt: Date) {
        self.id = id
        self.createdAt = createdAt
    }
}

public struct RetentionDecision: Sendable, Equatable {
    /// Kept backups and the rules that keep each.
    public let keep: [String: [String]]
    /// Backups no rule keeps, newest first.
    public let remove: [String]
}
