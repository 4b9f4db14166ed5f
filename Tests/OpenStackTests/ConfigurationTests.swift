import Foundation
import OpenStack
import XCTest

/// clouds.yaml and OS_* read the way openstacksdk reads them (no services needed).
final class ConfigurationTests: XCTestCase {
    var directory: URL!

    override func setUp() {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("lifeboat-os-config-\(UUID().uuidString.prefix(8))")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: directory)
    }

    private func write(_ text: String, _ name: String) throws -> String {
        let path = directory.appendingPathComponent(name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private let cloudsYAML = """
        clouds:
          prod:
            auth:
              auth_url: https://keystone.example:5000
              username: backup
              password: "s3cret: with colon"
              project_name: ops
              user_domain_name: Corp
            region_name: RegionTwo
            interface: internalURL
            cacert: /etc/ssl/corp-ca.pem
          lab:
            auth:
              auth_url: http://lab:5000/v3
              username: lab\\tester
              project_id: 1234
            verify: false
            regions: [LabOne, LabTwo]
        """

    func testCloudsFileNamedByOSCloudIsFoundThroughOSClientConfigFile() throws {
        let path = try write(cloudsYAML, "clouds.yaml")
        let environment = ["OS_CLIENT_CONFIG_FILE": path, "OS_CLOUD": "prod", "HOME": directory.path,
                           "OS_AUTH_URL": "http://ignored:5000/v3", "OS_USERNAME": "ignored"]
        let config = try CloudConfiguration.load(environment: environment, currentDirectory: "/nonexistent")
        XCTAssertEqual(config.cloudName, "prod")
        XCTAssertEqual(config.authURL, "https://keystone.example:5000")
        XCTAssertEqual(try config.identityURL.absoluteString, "https://keystone.example:5000/v3")
        XCTAssertEqual(config.username, "backup")
        XCTAssertEqual(config.password.revealed, "s3cret: with colon")
        XCTAssertEqual(config.userDomainName, "Corp")
        XCTAssertEqual(config.project?.domainName, "Corp", "the project domain defaults to the user's")
        XCTAssertEqual(config.regionName, "RegionTwo")
        XCTAssertEqual(config.interface, "internal")
        XCTAssertEqual(config.tls, TLSOptions(caBundlePath: "/etc/ssl/corp-ca.pem", verifyPeer: true))
    }

    func testSecondCloudWithBackslashUserInsecureAndRegionList() throws {
        let path = try write(cloudsYAML, "clouds.yaml")
        XCTAssertThrowsError(try CloudConfiguration.fromCloudsFile(path, cloud: "lab")) { error in
            XCTAssertTrue("\(error)".contains("no password"), "\(error)")
        }
        // Lifeboat's addition: the password kept in a file of its own.
        let passwordFile = try write("from-a-file\n", "lab.password")
        let withFile = try write(cloudsYAML.replacingOccurrences(of: "project_id: 1234", with: "project_id: 1234\n      password_file: \(passwordFile)"),
                                 "clouds-with-file.yaml")
        let lab = try CloudConfiguration.load(cloud: "lab", environment: ["OS_CLIENT_CONFIG_FILE": withFile, "HOME": directory.path],
                                              currentDirectory: "/nonexistent")
        XCTAssertEqual(lab.password.revealed, "from-a-file")
        XCTAssertEqual(lab.user.name, "tester")
        XCTAssertEqual(lab.user.domainName, "lab")
        XCTAssertEqual(lab.projectID, "1234", "numbers in YAML are read as the ids they are")
        XCTAssertFalse(lab.tls.verifyPeer)
        XCTAssertEqual(lab.regionName, "LabOne")
        let other = try write("another\n", "other.password")
        XCTAssertEqual(try lab.withPassword(fromFile: other).password.revealed, "another")
    }

    func testSearchOrderAndSecureYAML() throws {
        let home = directory.appendingPathComponent("home")
        let configDir = home.appendingPathComponent(".config/openstack")
        try FileManager.default.createDirectory(at: configDir, withIntermediateDirectories: true)
        let workDir = directory.appendingPathComponent("work")
        try FileManager.default.createDirectory(at: workDir, withIntermediateDirectories: true)
        try cloudsYAML.replacingOccurrences(of: "username: backup", with: "username: from-home")
            .write(to: configDir.appendingPathComponent("clouds.yaml"), atomically: true, encoding: .utf8)
        try "clouds:\n  prod:\n    auth:\n      password: from-secure\n".write(to: configDir.appendingPathComponent("secure.yaml"),
                                                                           atomically: true, encoding: .utf8)
        var config = try CloudConfiguration.load(cloud: "prod", environment: ["HOME": home.path], currentDirectory: workDir.path)
        XCTAssertEqual(config.username, "from-home")
        XCTAssertEqual(config.password.revealed, "from-secure", "secure.yaml is merged over clouds.yaml")

        // ./clouds.yaml comes before the user's.
        try cloudsYAML.replacingOccurrences(of: "username: backup", with: "username: from-cwd")
            .write(to: workDir.appendingPathComponent("clouds.yaml"), atomically: true, encoding: .utf8)
        config = try CloudConfiguration.load(cloud: "prod", environment: ["HOME": home.path], currentDirectory: workDir.path)
        XCTAssertEqual(config.username, "from-cwd")

        XCTAssertEqual(CloudsFile.searchPath(environment: ["HOME": "/h", "OS_CLIENT_CONFIG_FILE": "/x.yaml"], currentDirectory: "/w"),
                       ["/x.yaml", "/w/clouds.yaml", "/h/.config/openstack/clouds.yaml", "/etc/openstack/clouds.yaml"])

        XCTAssertThrowsError(try CloudConfiguration.load(cloud: "nope", environment: ["HOME": home.path], currentDirectory: workDir.path)) { error in
            XCTAssertTrue("\(error)".contains("has no cloud nope") && "\(error)".contains("lab, prod"), "\(error)")
        }
    }

    func testEnvironmentVariables() throws {
        let environment = [
            "OS_AUTH_URL": "http://keystone:5000/v3/", "OS_USERNAME": "Corp\\operator", "OS_PASSWORD": "pw",
            "OS_PROJECT_NAME": "ops", "OS_PROJECT_DOMAIN_ID": "default", "OS_REGION_NAME": "R1",
            "OS_INTERFACE": "admin", "OS_CACERT": "/ca.pem", "OS_INSECURE": "true",
        ]
        let config = try CloudConfiguration.load(environment: environment, currentDirectory: "/nonexistent")
        XCTAssertNil(config.cloudName)
        XCTAssertEqual(config.user.name, "operator")
        XCTAssertEqual(config.user.domainName, "Corp")
        XCTAssertEqual(config.project?.domainID, "default")
        XCTAssertEqual(config.regionName, "R1")
        XCTAssertEqual(config.interface, "admin")
        XCTAssertEqual(config.tls, TLSOptions(caBundlePath: "/ca.pem", verifyPeer: false))
        XCTAssertEqual(try config.identityURL.absoluteString, "http://keystone:5000/v3")

        // Selectors alone are no cloud.
        XCTAssertThrowsError(try CloudConfiguration.load(environment: ["OS_REGION_NAME": "R1"], currentDirectory: "/nonexistent")) { error in
            XCTAssertTrue("\(error)".contains("no cloud selected"), "\(error)")
        }
        XCTAssertThrowsError(try CloudConfiguration.load(environment: ["OS_AUTH_URL": "http://k/v3", "OS_USERNAME": "u"],
                                                         currentDirectory: "/nonexistent")) { error in
            XCTAssertTrue("\(error)".contains("no password"), "\(error)")
        }
    }

    func testQualifiedUserNames() {
        XCTAssertEqual(QualifiedUserName(parsing: "lifeboat-domain2\\alice"), QualifiedUserName(parsing: "lifeboat-domain2\\alice"))
        let split = QualifiedUserName(parsing: "lifeboat-domain2\\alice")
        XCTAssertEqual(split.domain, "lifeboat-domain2")
        XCTAssertEqual(split.name, "alice")
        XCTAssertNil(QualifiedUserName(parsing: "alice").domain)
        XCTAssertNil(QualifiedUserName(parsing: "\\alice").domain, "an empty domain is no domain")
        // An explicit user domain wins over the prefix; the prefix is still taken off.
        let explicit = CloudConfiguration(authURL: "http://k/v3", username: "d\\u", password: Secret("p"), userDomainName: "Other")
        XCTAssertEqual(explicit.user.name, "u")
        XCTAssertEqual(explicit.user.domainName, "Other")
    }

    func testUnreadableOrEmptyPasswordFile() throws {
        XCTAssertThrowsError(try Secret(contentsOfFile: directory.appendingPathComponent("missing").path))
        let empty = try write("\n", "empty")
        XCTAssertThrowsError(try Secret(contentsOfFile: empty)) { error in
            XCTAssertTrue("\(error)".contains("empty"), "\(error)")
        }
    }

    func testBrokenYAMLSaysWhereNotWhat() throws {
        let path = try write("clouds:\n  prod:\n    auth: {password: \"hunter2-secret\n", "clouds.yaml")
        XCTAssertThrowsError(try CloudConfiguration.fromCloudsFile(path, cloud: "prod")) { error in
            XCTAssertTrue("\(error)".contains("not valid YAML"), "\(error)")
            XCTAssertFalse("\(error)".contains("hunter2"), "\(error)")
        }
    }
}
