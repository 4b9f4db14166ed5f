import XCTest
final class EventsTestsPlaceholder: XCTestCase { func testNothingYet() { XCTAssertTrue(true) } }
