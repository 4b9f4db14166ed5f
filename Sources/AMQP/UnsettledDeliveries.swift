/// The deliveries a consumer has handed out and not yet settled, and the acks asked for since
/// the consumer thread last sent some; touched by that thread only.
///
/// Why: one `basic.ack` per message costs a frame and a syscall here and, for a quorum queue, a
/// separate settle command in the broker's Raft log. When several acks wait in the mailbox at
/// once and they cover the oldest unsettled deliveries without a gap, one `basic.ack` with
/// `multiple` settles them all. An ack is still sent only for a delivery the application acked,
/// and no later than before (in the same pass over the mailbox): acks are coalesced, never delayed.
struct UnsettledDeliveries {
    /// Delivery tags not yet settled, ascending (the broker numbers a channel's deliveries in order).
    private var tags: [UInt64] = []
    private var head = 0
    /// Acks asked for and not yet sent.
    private var requested: Set<UInt64> = []

    var count: Int { tags.count - head }
    var isEmpty: Bool { head == tags.count }

    mutating func delivered(_ tag: UInt64) {
        tags.append(tag)
    }

    mutating func requestAck(_ tag: UInt64) {
        requested.insert(tag)
    }

    /// Forgets a delivery settled another way (a reject); false when it is not unsettled (settled
    /// already, or from before a reconnect), so nothing must be sent for it.
    mutating func remove(_ tag: UInt64) -> Bool {
        requested.remove(tag)
        guard let index = tags[head...].firstIndex(of: tag) else { return false }
        if index == head { head += 1 } else { tags.remove(at: index) }
        compact()
        return true
    }

    /// The acks to send now: `upTo` settles, with `multiple`, the oldest `upToCount` deliveries,
    /// all of them acked; `singles` are acked deliveries behind one still in hand. Tags that are
    /// not unsettled (an ack asked twice) are dropped rather than sent: the broker would close
    /// the channel over an unknown tag.
    mutating func takeAcks() -> (upTo: UInt64?, upToCount: Int, singles: [UInt64]) {
        guard !requested.isEmpty else { return (nil, 0, []) }
        let start = head
        while head < tags.count, requested.remove(tags[head]) != nil { head += 1 }
        let upToCount = head - start
        let upTo = upToCount > 0 ? tags[head - 1] : nil
        var singles: [UInt64] = []
        if !requested.isEmpty {
            singles = tags[head...].filter { requested.contains($0) }
            tags = tags[head...].filter { !requested.contains($0) }
            head = 0
            requested = []
        }
        compact()
        return (upTo, upToCount, singles)
    }

    mutating func reset() {
        tags = []
        head = 0
        requested = []
    }

    private mutating func compact() {
        if head > 1024 && head * 2 > tags.count {
            tags.removeFirst(head)
            head = 0
        }
    }
}
