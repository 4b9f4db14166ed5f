import XCTest
final class RepositoryTestsPlaceholder: XCTestCase { func testNothingYet() { XCTAssertTrue(true) } }
