import Foundation

extension CloudConfiguration {
    /// The configuration as openstacksdk would pick it: the cloud named by `cloud` or else
    /// `OS_CLOUD` from clouds.yaml (see `CloudsFile`); without either, the `OS_*` variables
    /// (`OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`, `OS_USER_DOMAIN_NAME`/`_ID`,
    /// `OS_PROJECT_NAME`/`_ID`, `OS_PROJECT_DOMAIN_NAME`/`_ID`, `OS_REGION_NAME`,
    /// `OS_INTERFACE`, `OS_CACERT`, `OS_INSECURE`). As in openstacksdk, a named cloud does
    /// not take `OS_*` values besides those selectors (python-openstackclient's command line
    /// differs). Lifeboat adds `OS_PASSWORD_FILE` (and `password_file` in a cloud's `auth`).
    public static func load(cloud: String? = nil,
                            environment: [String: String] = ProcessInfo.processInfo.environment,
                            currentDirectory: String = FileManager.default.currentDirectoryPath) throws -> CloudConfiguration {
        let selected = cloud ?? environment["OS_CLOUD"].flatMap { $0.isEmpty ? nil : $0 }
        if let selected, selected != "envvars" {
            guard let (path, clouds) = try CloudsFile.clouds(environment: environment, currentDirectory: currentDirectory) else {
                let places = CloudsFile.searchPath(environment: environment, currentDirectory: currentDirectory)
                throw OpenStackError.configuration("cloud \(selected) is asked for but there is no clouds.yaml (looked at \(places.joined(separator: ", ")))")
            }
            guard let entry = clouds[selected] as? [String: Any] else {
                let known = clouds.keys.sorted().joined(separator: ", ")
                throw OpenStackError.configuration("\(path) has no cloud \(selected) (it has: \(known.isEmpty ? "none" : known))")
            }
            return try CloudEntry(entry, source: "\(path), cloud \(selected)").configuration(cloudName: selected)
        }
        guard let entry = environmentEntry(environment) else {
            throw OpenStackError.configuration("no cloud selected: set OS_CLOUD to a cloud of clouds.yaml, or OS_AUTH_URL and the other OS_* variables")
        }
        return try CloudEntry(entry, source: "the OS_* environment variables").configuration(cloudName: nil)
    }

    /// The named cloud of the clouds.yaml at `path` (no search, no secure.yaml).
    public static func fromCloudsFile(_ path: String, cloud: String) throws -> CloudConfiguration {
        guard let entry = try CloudsFile.read(path)[cloud] as? [String: Any] else {
            throw OpenStackError.configuration("\(path) has no cloud \(cloud)")
        }
        return try CloudEntry(entry, source: "\(path), cloud \(cloud)").configuration(cloudName: cloud)
    }

    /// openstacksdk's reading of the environment: every `OS_X` becomes key `x` of a cloud,
    /// unless only selectors (`OS_CLOUD`, `OS_REGION_NAME`, the file names) are set.
    static func environmentEntry(_ environment: [String: String]) -> [String: Any]? {
        let selectors: Set = ["OS_CLOUD", "OS_REGION_NAME", "OS_CLIENT_CONFIG_FILE", "OS_CLIENT_SECURE_FILE", "OS_CLOUD_NAME"]
        let keys = environment.keys.filter {
            $0.hasPrefix("OS_") && !$0.hasPrefix("OS_TEST") && !$0.hasPrefix("OS_STD") && !$0.hasPrefix("OS_LOG")
        }
        guard !Set(keys).subtracting(selectors).isEmpty else { return nil }
        var entry: [String: Any] = [:]
        for key in keys { entry[key.dropFirst(3).lowercased()] = environment[key] }
        return entry
    }
}

/// One cloud's settings, from clouds.yaml (auth values under `auth`) or the environment (all at
/// the top): looked up in both places, with the old spellings openstacksdk still accepts.
struct CloudEntry {
    let top: [String: Any]
    let auth: [String: Any]
    let source: String

    init(_ entry: [String: Any], source: String) {
        top = entry
        auth = entry["auth"] as? [String: Any] ?? [:]
        self.source = source
    }

    func string(_ keys: String...) -> String? {
        for key in keys {
            for value in [auth[key], top[key]] {
                switch value {
                case let text as String where !text.isEmpty: return text
                case let number as Int: return String(number)
                case let number as Double: return String(number)
                case let flag as Bool: return String(flag)
                default: continue
                }
            }
        }
        return nil
    }

    func flag(_ key: String) throws -> Bool? {
        if let value = top[key] as? Bool ?? auth[key] as? Bool { return value }
        guard let text = string(key)?.lowercased() else { return nil }
        switch text {
        case "true", "yes", "1", "on": return true
        case "false", "no", "0", "off": return false
        default: throw OpenStackError.configuration("\(source): \(key) is \(text), not true or false")
        }
    }

    func configuration(cloudName: String?) throws -> CloudConfiguration {
        guard let authURL = string("auth_url") else {
            throw OpenStackError.configuration("\(source) gives no auth_url")
        }
        let password: Secret
        if let text = string("password") {
            password = Secret(text)
        } else if let file = string("password_file") {
            password = try Secret(contentsOfFile: file)
        } else {
            throw OpenStackError.configuration("\(source) gives no password (password, or OS_PASSWORD_FILE / password_file)")
        }
        guard string("username", "user_id") != nil else {
            throw OpenStackError.configuration("\(source) gives no username or user_id")
        }
        // `domain_name`/`domain_id` (and OSC's `default_domain`) stand for both domains unless
        // those are given.
        let domainName = string("domain_name")
        let domainID = string("domain_id") ?? string("default_domain")
        let userDomainName = string("user_domain_name"), userDomainID = string("user_domain_id")
        let projectDomainName = string("project_domain_name"), projectDomainID = string("project_domain_id")
        var tls = TLSOptions(caBundlePath: string("cacert"))
        if let verify = try flag("verify") { tls.verifyPeer = verify }
        if let insecure = try flag("insecure") { tls.verifyPeer = !insecure }
        return CloudConfiguration(
            authURL: authURL, username: string("username"), userID: string("user_id"), password: password,
            userDomainName: userDomainName ?? (userDomainID == nil ? domainName : nil),
            userDomainID: userDomainID ?? (userDomainName == nil ? domainID : nil),
            projectName: string("project_name", "tenant_name"), projectID: string("project_id", "tenant_id"),
            projectDomainName: projectDomainName ?? (projectDomainID == nil ? domainName : nil),
            projectDomainID: projectDomainID ?? (projectDomainName == nil ? domainID : nil),
            regionName: string("region_name") ?? firstRegion, interface: string("interface", "endpoint_type") ?? "public",
            tls: tls, cloudName: cloudName)
    }

    /// A cloud may list `regions` instead of naming one; openstacksdk takes the first.
    private var firstRegion: String? {
        guard let regions = top["regions"] as? [Any], let first = regions.first else { return nil }
        if let name = first as? String { return name }
        return (first as? [String: Any])?["name"] as? String
    }
}
