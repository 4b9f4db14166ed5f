import XCTest
@testable import Repository

final class SmokeTests: XCTestCase {
    func testCreateAndOpen() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lb-smoke-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let created = try Repository.create(path: dir)
        let opened = try Repository.open(path: dir)
        XCTAssertEqual(created.repositoryID, opened.repositoryID)
        XCTAssertEqual(opened.chunkSize, RepositoryOptions.defaultChunkSize)
    }
}
