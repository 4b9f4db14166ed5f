import Foundation
import XCTest
@testable import Libvirt

/// Reading disks out of domain XML as libvirt writes it after a snapshot, and rewriting it for
/// a restored copy.
final class DomainDescriptionTests: XCTestCase {
    static let liveXML = """
        <domain type='qemu' id='3'>
          <name>web-1</name>
          <uuid>4a1b7c2e-0000-4000-8000-000000000001</uuid>
          <memory unit='KiB'>98304</memory>
          <devices>
            <disk type='file' device='disk'>
              <driver name='qemu' type='qcow2'/>
              <source file='/var/lib/libvirt/images/web-1-vda.lifeboat-b1.qcow2' index='3'/>
              <backingStore type='file' index='2'>
                <format type='qcow2'/>
                <source file='/var/lib/libvirt/images/web-1-vda.qcow2'/>
                <backingStore type='file' index='1'>
                  <format type='raw'/>
                  <source file='/var/lib/nova/instances/_base/abc'/>
                  <backingStore/>
                </backingStore>
              </backingStore>
              <target dev='vda' bus='virtio'/>
              <alias name='virtio-disk0'/>
            </disk>
            <disk type='network' device='disk'>
              <driver name='qemu' type='raw'/>
              <auth username='cinder'><secret type='ceph' uuid='x'/></auth>
              <source protocol='rbd' name='volumes/volume-42'><host name='127.0.0.1' port='6789'/></source>
              <target dev='vdb' bus='virtio'/>
            </disk>
            <disk type='file' device='cdrom'>
              <source file='/isos/boot.iso'/>
              <target dev='sda' bus='sata'/>
            </disk>
            <interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/></interface>
          </devices>
        </domain>
        """

    func testDisksAndChainsAreRead() throws {
        let domain = try DomainDescription(xml: Self.liveXML)
        XCTAssertEqual(domain.name, "web-1")
        XCTAssertEqual(domain.uuid, "4a1b7c2e-0000-4000-8000-000000000001")
        XCTAssertEqual(domain.disks.map(\.target), ["vda", "vdb"], "the CD-ROM is not a disk to back up")
        XCTAssertEqual(domain.disks[0].backing, .file(path: "/var/lib/libvirt/images/web-1-vda.lifeboat-b1.qcow2"))
        XCTAssertEqual(domain.disks[0].format, "qcow2")
        XCTAssertEqual(domain.disks[0].backingFiles, ["/var/lib/libvirt/images/web-1-vda.qcow2", "/var/lib/nova/instances/_base/abc"])
        XCTAssertEqual(domain.disks[1].backing, .rbd(name: "volumes/volume-42"))
    }

    func testRestoredCopyHasNewIdentityPlainFilesAndOnlyRestoredDisks() throws {
        let xml = try DomainDescription(xml: Self.liveXML).restoredXML(
            name: "web-1-restored", disks: ["vda": ("/var/lib/libvirt/images/web-1-restored-vda.qcow2", "qcow2")])
        let copy = try DomainDescription(xml: xml)
        XCTAssertEqual(copy.name, "web-1-restored")
        XCTAssertNil(copy.uuid, "libvirt gives the copy a new UUID")
        XCTAssertEqual(copy.disks.map(\.target), ["vda"], "the RBD disk was not restored, so it is not defined")
        XCTAssertEqual(copy.disks[0].backing, .file(path: "/var/lib/libvirt/images/web-1-restored-vda.qcow2"))
        XCTAssertEqual(copy.disks[0].backingFiles, [])
        XCTAssertFalse(xml.contains("<backingStore"), xml)
        XCTAssertFalse(xml.contains("52:54:00:aa:bb:cc"), "a copy must not share the original's MAC address")
        XCTAssertFalse(xml.contains("id=\"3\""), "the live id is dropped")
        XCTAssertTrue(xml.contains("/isos/boot.iso"), "other devices stay")
    }

    func testRestoreUnderTheSameNameKeepsTheUUID() throws {
        let xml = try DomainDescription(xml: Self.liveXML).restoredXML(name: nil, disks: ["vda": ("/r/vda.raw", "raw"), "vdb": ("/r/vdb.raw", "raw")])
        let copy = try DomainDescription(xml: xml)
        XCTAssertEqual(copy.uuid, "4a1b7c2e-0000-4000-8000-000000000001")
        XCTAssertEqual(copy.disks.map(\.backing), [.file(path: "/r/vda.raw"), .file(path: "/r/vdb.raw")])
        XCTAssertEqual(copy.disks.map(\.format), ["raw", "raw"])
        XCTAssertFalse(xml.contains("cinder"), "the RBD disk's credentials go with its old source")
    }

    func testNotADomainIsAClearError() {
        XCTAssertThrowsError(try DomainDescription(xml: "<network><name>x</name></network>")) { error in
            XCTAssertEqual(error as? LibvirtError, .unreadableXML("the XML is not a <domain>"))
        }
        XCTAssertThrowsError(try DomainDescription(xml: "<domain"))
    }

    func testShellQuoting() {
        XCTAssertEqual(Shell.quote("/var/lib/x.qcow2"), "/var/lib/x.qcow2")
        XCTAssertEqual(Shell.quote("a b"), "'a b'")
        XCTAssertEqual(Shell.quote("x'; rm -rf /"), "'x'\\''; rm -rf /'")
        XCTAssertEqual(Shell.quote(""), "''")
        XCTAssertEqual(Shell.quote("$(id)"), "'$(id)'")
    }
}
