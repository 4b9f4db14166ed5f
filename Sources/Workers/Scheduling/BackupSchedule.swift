import Events
import Foundation

/// When a policy's backups run: a slot every `every` seconds, starting `startAt` after midnight
/// UTC, aligned to the Unix epoch (so a `24h` schedule at `01:30` runs at 01:30 UTC each day,
/// and a `7d` one on Thursdays, the epoch's weekday). A slot's backup may start until `window`
/// after the slot began; a slot missed longer than that (no scheduler running) is skipped, not
/// made up later.
///
/// ```json
/// {"name": "nightly", "every": "24h", "startAt": "01:30", "window": "4h", "mode": "incremental"}
/// ```
public struct BackupSchedule: Sendable, Decodable, Equatable {
    /// Part of the request ids (`<policy>-<instance>-<schedule>-<slot>`): 1 to 24 letters, digits, '-', '_'.
    public var name: String
    public var every: Int
    public var startAt: Int
    public var window: Int
    /// Full or incremental (default: the policy's mode, else incremental).
    public var mode: BackupMode?
    /// 0 to 9, carried as the requests' AMQP priority (default: the policy's).
    public var priority: Int?

    public init(name: String, every: Int, startAt: Int = 0, window: Int? = nil, mode: BackupMode? = nil, priority: Int? = nil) {
        self.name = name
        self.every = every
        self.startAt = startAt
        self.window = window ?? every
        self.mode = mode
        self.priority = priority
    }

    enum CodingKeys: String, CodingKey { case name, every, startAt, window, mode, priority }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        every = try Self.seconds(c, .every) ?? 0
        window = try Self.seconds(c, .window) ?? every
        mode = try c.decodeIfPresent(BackupMode.self, forKey: .mode)
        priority = try c.decodeIfPresent(Int.self, forKey: .priority)
        startAt = 0
        if let text = try c.decodeIfPresent(String.self, forKey: .startAt) {
            let parts = text.split(separator: ":").compactMap { Int($0) }
            guard parts.count == 2, (0..<24).contains(parts[0]), (0..<60).contains(parts[1]) else {
                throw DecodingError.dataCorruptedError(forKey: .startAt, in: c, debugDescription: "startAt is HH:MM (UTC), not \"\(text)\"")
            }
            startAt = parts[0] * 3600 + parts[1] * 60
        }
        guard every >= 60 else {
            throw DecodingError.dataCorruptedError(forKey: .every, in: c, debugDescription: "every must be at least 1m")
        }
        guard window >= 60, window <= every else {
            throw DecodingError.dataCorruptedError(forKey: .window, in: c, debugDescription: "window must be from 1m to the schedule's period")
        }
    }

    /// A duration: a number of seconds, or "90s", "15m", "6h", "1d", "7d".
    private static func seconds(_ c: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> Int? {
        if let number = try? c.decodeIfPresent(Int.self, forKey: key) { return number }
        guard let text = try c.decodeIfPresent(String.self, forKey: key) else { return nil }
        let units = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        guard let unit = text.last.flatMap({ units[String($0)] }), let value = Int(text.dropLast()), value > 0 else {
            throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "\"\(text)\" is not a duration like 15m, 6h or 1d")
        }
        return value * unit
    }

    /// The slot `now` falls in: when it began, and whether its window is still open.
    public func slot(at now: Date) -> (start: Date, open: Bool) {
        let seconds = Int(now.timeIntervalSince1970.rounded(.down))
        let start = Int((Double(seconds - startAt) / Double(every)).rounded(.down)) * every + startAt
        return (Date(timeIntervalSince1970: Double(start)), seconds < start + window)
    }
}
