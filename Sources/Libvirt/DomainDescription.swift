import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// What Lifeboat reads from (and rewrites in) a libvirt domain XML: its identity and its disks.
public struct DomainDescription: Sendable {
    public struct Disk: Sendable, Equatable, Codable {
        public enum Backing: Sendable, Equatable, Codable {
            /// An image file (or a block device) on the hypervisor.
            case file(path: String)
            /// An RBD image (`pool/image`): the Ceph source's business, not the hypervisor's.
            case rbd(name: String)
            /// Anything else (iSCSI, NBD, a volume of a storage pool): not supported.
            case other(String)
        }

        /// The guest-facing name, e.g. `vda`: how requests and backups name a disk.
        public var target: String
        public var backing: Backing
        /// The driver's format of the active image: `raw`, `qcow2`.
        public var format: String
        /// Files below the active image, nearest first, as far as libvirt reports them.
        public var backingFiles: [String]
        /// The disk's `<serial>`: Nova sets it to the Cinder volume's id for volumes it attaches.
        public var serial: String? = nil
    }

    public var name: String
    public var uuid: String?
    /// The domain's disks (`device='disk'` only: CD-ROMs and floppies are not backed up).
    public var disks: [Disk]
    public let xml: String

    public init(xml: String) throws {
        let document: XMLDocument
        do {
            document = try XMLDocument(xmlString: xml, options: [])
        } catch {
            throw LibvirtError.unreadableXML("the domain XML does not parse: \(error.localizedDescription)")
        }
        guard let root = document.rootElement(), root.name == "domain" else {
            throw LibvirtError.unreadableXML("the XML is not a <domain>")
        }
        guard let name = root.child("name")?.stringValue, !name.isEmpty else { throw LibvirtError.unreadableXML("the domain has no <name>") }
        self.name = name
        self.uuid = root.child("uuid")?.stringValue
        self.xml = xml
        disks = try (root.child("devices")?.children("disk") ?? []).compactMap { element -> Disk? in
            guard (element.attribute("device") ?? "disk") == "disk" else { return nil }
            guard let target = element.child("target")?.attribute("dev") else { throw LibvirtError.unreadableXML("a disk has no <target dev>") }
            let source = element.child("source")
            let backing: Disk.Backing
            switch element.attribute("type") ?? "file" {
            case "file": backing = .file(path: source?.attribute("file") ?? "")
            case "block": backing = .file(path: source?.attribute("dev") ?? "")
            case "network" where source?.attribute("protocol") == "rbd": backing = .rbd(name: source?.attribute("name") ?? "")
            case let other: backing = .other(source?.attribute("protocol") ?? other)
            }
            var backingFiles: [String] = []
            var store = element.child("backingStore")
            while let current = store, let file = current.child("source")?.attribute("file") ?? current.child("source")?.attribute("dev") {
                backingFiles.append(file)
                store = current.child("backingStore")
            }
            return Disk(target: target, backing: backing, format: element.child("driver")?.attribute("type") ?? "raw",
                        backingFiles: backingFiles, serial: element.child("serial")?.stringValue)
        }
    }

    /// The XML to define a restored copy: each restored disk a plain file of its new path and
    /// format with no backing chain, disks not restored removed, runtime attributes dropped,
    /// and with a new name a new identity (no UUID, so libvirt makes one; no MAC addresses).
    public func restoredXML(name newName: String?, disks restored: [String: (path: String, format: String)]) throws -> String {
        let document = try XMLDocument(xmlString: xml, options: [])
        guard let root = document.rootElement() else { throw LibvirtError.unreadableXML("the XML has no root") }
        root.removeAttribute(forName: "id")
        if let newName, newName != name {
            root.child("name")?.stringValue = newName
            if let uuid = root.child("uuid") { root.removeChild(at: uuid.index) }
            for mac in root.child("devices")?.children("interface").compactMap({ $0.child("mac") }) ?? [] {
                (mac.parent as? XMLElement)?.removeChild(at: mac.index)
            }
        }
        guard let devices = root.child("devices") else { return document.xmlString }
        for disk in devices.children("disk").reversed() where (disk.attribute("device") ?? "disk") == "disk" {
            guard let target = disk.child("target")?.attribute("dev"), let file = restored[target] else {
                devices.removeChild(at: disk.index)
                continue
            }
            disk.setAttribute("type", "file")
            for old in disk.children("source") + disk.children("backingStore") + disk.children("auth") { disk.removeChild(at: old.index) }
            let source = XMLElement(name: "source")
            source.setAttribute("file", file.path)
            disk.insertChild(source, at: disk.child("driver").map { $0.index + 1 } ?? 0)
            if let driver = disk.child("driver") {
                driver.setAttribute("type", file.format)
            } else {
                let driver = XMLElement(name: "driver")
                driver.setAttribute("name", "qemu")
                driver.setAttribute("type", file.format)
                disk.insertChild(driver, at: 0)
            }
        }
        return document.xmlString
    }
}

public enum LibvirtError: Error, Sendable, CustomStringConvertible, Equatable {
    case unreadableXML(String)
    case unreadableImageInfo(String)
    case unsupportedDisk(String)
    case domainNotFound(host: String, domain: String)

    public var description: String {
        switch self {
        case .unreadableXML(let reason): "domain XML: \(reason)"
        case .unreadableImageInfo(let reason): "qemu-img output: \(reason)"
        case .unsupportedDisk(let reason): reason
        case .domainNotFound(let host, let domain): "there is no domain \(domain) on \(host) (deleted?)"
        }
    }
}

extension XMLElement {
    func child(_ name: String) -> XMLElement? { elements(forName: name).first }
    func children(_ name: String) -> [XMLElement] { elements(forName: name) }
    func attribute(_ name: String) -> String? { attribute(forName: name)?.stringValue }

    func setAttribute(_ name: String, _ value: String) {
        if let existing = attribute(forName: name) {
            existing.stringValue = value
        } else if let attribute = XMLNode.attribute(withName: name, stringValue: value) as? XMLNode {
            addAttribute(attribute)
        }
    }
}
