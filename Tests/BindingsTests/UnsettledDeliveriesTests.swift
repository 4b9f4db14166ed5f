@testable import AMQP
import XCTest

/// The consumer's ack coalescing: a `multiple` ack may only ever cover deliveries the
/// application acked, since anything else it covered would be lost on a crash (ack-after-handle).
final class UnsettledDeliveriesTests: XCTestCase {
    func testARunFromTheOldestIsOneMultipleAck() {
        var deliveries = UnsettledDeliveries()
        for tag in UInt64(1)...5 { deliveries.delivered(tag) }
        for tag in [UInt64(3), 1, 2] { deliveries.requestAck(tag) }
        let acks = deliveries.takeAcks()
        XCTAssertEqual(acks.upTo, 3)
        XCTAssertEqual(acks.upToCount, 3)
        XCTAssertEqual(acks.singles, [])
        XCTAssertEqual(deliveries.count, 2)
    }

    func testAcksBehindAnUnackedDeliveryGoOneByOne() {
        var deliveries = UnsettledDeliveries()
        for tag in UInt64(1)...5 { deliveries.delivered(tag) }
        for tag in [UInt64(2), 4, 5] { deliveries.requestAck(tag) }
        let acks = deliveries.takeAcks()
        XCTAssertNil(acks.upTo, "delivery 1 is still in hand: nothing may cover it")
        XCTAssertEqual(acks.singles, [2, 4, 5])
        XCTAssertEqual(deliveries.count, 2)
        deliveries.requestAck(1)
        let later = deliveries.takeAcks()
        XCTAssertEqual(later.upTo, 1)
        XCTAssertEqual(later.upToCount, 1, "a single ack, not multiple: 2 was settled already")
        deliveries.requestAck(3)
        XCTAssertEqual(deliveries.takeAcks().upTo, 3)
        XCTAssertTrue(deliveries.isEmpty)
    }

    func testRejectedAndUnknownTagsAreNeverAcked() {
        var deliveries = UnsettledDeliveries()
        for tag in UInt64(1)...3 { deliveries.delivered(tag) }
        XCTAssertTrue(deliveries.remove(1))
        XCTAssertFalse(deliveries.remove(1), "settled already")
        deliveries.requestAck(2)
        deliveries.requestAck(2)
        deliveries.requestAck(99)
        let acks = deliveries.takeAcks()
        XCTAssertEqual(acks.upTo, 2)
        XCTAssertEqual(acks.upToCount, 1)
        XCTAssertEqual(acks.singles, [], "an unknown tag would make the broker close the channel")
        XCTAssertEqual(deliveries.count, 1)
        deliveries.reset()
        XCTAssertTrue(deliveries.isEmpty)
    }

    func testManyDeliveriesStayCheap() {
        var deliveries = UnsettledDeliveries()
        for tag in UInt64(1)...100_000 {
            deliveries.delivered(tag)
            if tag % 3 == 0 {
                for acked in tag - 2...tag { deliveries.requestAck(acked) }
                XCTAssertEqual(deliveries.takeAcks().upTo, tag)
            }
        }
        XCTAssertEqual(deliveries.count, 1)
    }
}
