import Foundation
import Yams

/// Finds and reads clouds.yaml the way openstacksdk does: the first file that exists of
/// `OS_CLIENT_CONFIG_FILE`, `./clouds.yaml`, the user's `~/.config/openstack/clouds.yaml`
/// (`$XDG_CONFIG_HOME` respected), `/etc/openstack/clouds.yaml`; a `secure.yaml` found the same
/// way (`OS_CLIENT_SECURE_FILE` first) is merged over it, so passwords can live apart.
public enum CloudsFile {
    /// Where clouds.yaml is looked for, in order.
    public static func searchPath(named file: String = "clouds.yaml", environment: [String: String],
                                  currentDirectory: String) -> [String] {
        var paths: [String] = []
        let variable = file == "secure.yaml" ? "OS_CLIENT_SECURE_FILE" : "OS_CLIENT_CONFIG_FILE"
        if let explicit = environment[variable], !explicit.isEmpty { paths.append(explicit) }
        paths.append((currentDirectory as NSString).appendingPathComponent(file))
        let home = environment["HOME"] ?? NSHomeDirectory()
        let configHome = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? "\(home)/.config"
        paths.append("\(configHome)/openstack/\(file)")
        paths.append("/etc/openstack/\(file)")
        return paths
    }

    /// The `clouds` mapping of the first clouds.yaml found, with secure.yaml merged in, and the
    /// file it came from; nil when there is none.
    static func clouds(environment: [String: String], currentDirectory: String) throws -> (path: String, clouds: [String: Any])? {
        let fileManager = FileManager.default
        guard let path = searchPath(environment: environment, currentDirectory: currentDirectory)
            .first(where: { fileManager.isReadableFile(atPath: $0) }) else { return nil }
        var clouds = try read(path)
        if let secure = searchPath(named: "secure.yaml", environment: environment, currentDirectory: currentDirectory)
            .first(where: { fileManager.isReadableFile(atPath: $0) }) {
            clouds = merge(clouds, over: try read(secure))
        }
        return (path, clouds)
    }

    /// The `clouds` mapping of one YAML file.
    static func read(_ path: String) throws -> [String: Any] {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw OpenStackError.configuration("cannot read \(path): \(error.localizedDescription)")
        }
        let document: Any?
        do { document = try Yams.load(yaml: text) } catch {
            // Yams quotes the offending line, which may hold a password: say where, not what.
            throw OpenStackError.configuration("\(path) is not valid YAML\(location(of: error))")
        }
        guard let root = document as? [String: Any] else {
            throw OpenStackError.configuration("\(path) is not a YAML mapping")
        }
        guard let clouds = root["clouds"] else { return [:] }
        guard let mapping = clouds as? [String: Any] else {
            throw OpenStackError.configuration("\(path): `clouds` is not a mapping of cloud names")
        }
        return mapping
    }

    private static func location(of error: any Error) -> String {
        if let yaml = error as? YamlError, case .scanner(_, _, let mark, _) = yaml { return " (line \(mark.line))" }
        if let yaml = error as? YamlError, case .parser(_, _, let mark, _) = yaml { return " (line \(mark.line))" }
        return ""
    }

    /// `secure` over `base`, mappings merged key by key (openstacksdk's merge of secure.yaml).
    static func merge(_ base: [String: Any], over secure: [String: Any]) -> [String: Any] {
        var result = base
        for (key, value) in secure {
            if let inner = value as? [String: Any], let existing = result[key] as? [String: Any] {
                result[key] = merge(existing, over: inner)
            } else {
                result[key] = value
            }
        }
        return result
    }
}
