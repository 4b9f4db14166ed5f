import Foundation

/// A KVM hypervisor as the libvirt strategy drives it: `virsh` and `qemu-img` run over a
/// `HostShell`, so nothing of Lifeboat's needs to be installed there.
public struct Hypervisor {
    /// The name the operator configured (used in messages and saved with backups).
    public let name: String
    public let shell: any HostShell
    /// libvirt's connection URI on the hypervisor.
    public let uri: String
    /// The SSH host key that was verified (saved with backups: which machine the data came from).
    public let hostKeyFingerprint: String?
    /// This worker's address for the unencrypted data path, when the operator chose it.
    public let fastPathAddress: String?

    public init(name: String, shell: any HostShell, uri: String = "qemu:///system", hostKeyFingerprint: String? = nil,
                fastPathAddress: String? = nil) {
        self.name = name
        self.shell = shell
        self.uri = uri
        self.hostKeyFingerprint = hostKeyFingerprint
        self.fastPathAddress = fastPathAddress
    }

    /// Runs a command there and returns its stdout; a failure throws with its stderr.
    @discardableResult
    public func run(_ arguments: [String], input: Data? = nil) throws -> ShellResult {
        try shell.checked(Shell.command(arguments), input: input, host: name)
    }

    @discardableResult
    public func virsh(_ arguments: [String], input: Data? = nil) throws -> ShellResult {
        try run(["virsh", "-q", "-c", uri] + arguments, input: input)
    }

    /// The domain's XML: live (with the current backing chains) or as defined (`inactive`).
    public func domain(_ domain: String, inactive: Bool = false) throws -> DomainDescription {
        do {
            return try DomainDescription(xml: try virsh(["dumpxml"] + (inactive ? ["--inactive"] : []) + ["--", domain]).output)
        } catch let failure as HostCommandFailed where failure.stderr.contains("failed to get domain") || failure.stderr.contains("Domain not found") {
            throw LibvirtError.domainNotFound(host: name, domain: domain)
        }
    }

    public func isRunning(_ domain: String) throws -> Bool {
        do {
            return try virsh(["domstate", "--", domain]).output.trimmingCharacters(in: .whitespacesAndNewlines) == "running"
        } catch let failure as HostCommandFailed where failure.stderr.contains("failed to get domain") || failure.stderr.contains("Domain not found") {
            throw LibvirtError.domainNotFound(host: name, domain: domain)
        }
    }

    /// Whether the QEMU guest agent answers: only then can a snapshot be quiesced.
    public func guestAgentAnswers(_ domain: String) -> Bool {
        (try? virsh(["qemu-agent-command", "--timeout", "5", "--", domain, #"{"execute":"guest-ping"}"#])) != nil
    }

    /// An external disk-only snapshot of `overlays` (target → new overlay file), atomic, with no
    /// libvirt snapshot metadata (Lifeboat keeps track itself); other disks are left out.
    public func snapshot(_ domain: String, name snapshotName: String, overlays: [String: String], skipping: [String],
                         quiesce: Bool) throws {
        var arguments = ["snapshot-create-as", "--domain", domain, "--name", snapshotName, "--disk-only", "--atomic", "--no-metadata"]
        if quiesce { arguments.append("--quiesce") }
        for (target, file) in overlays.sorted(by: { $0.key < $1.key }) { arguments += ["--diskspec", "\(target),snapshot=external,file=\(file)"] }
        for target in skipping { arguments += ["--diskspec", "\(target),snapshot=no"] }
        try virsh(arguments)
    }

    /// Merges `top` (a file in the middle of the disk's chain) into `base`, the file right
    /// below it, and deletes `top`. `base` is always named: libvirt's default is the bottom of
    /// the chain, which for Nova is a base image that other instances share.
    public func commit(_ domain: String, disk target: String, top: String, base: String) throws {
        try virsh(["blockcommit", "--domain", domain, "--path", target, "--top", top, "--base", base, "--wait", "--delete", "--verbose"])
    }

    /// Merges the active overlay into `base` (right below it), switches the disk back to `base`
    /// and deletes the overlay: undoing a snapshot.
    public func commitActive(_ domain: String, disk target: String, base: String) throws {
        try virsh(["blockcommit", "--domain", domain, "--path", target, "--base", base, "--active", "--pivot", "--wait", "--delete", "--verbose"])
    }

    // MARK: Dirty bitmaps (libvirt checkpoints)

    /// The domain's checkpoints, by name.
    public func checkpoints(_ domain: String) throws -> [String] {
        try virsh(["checkpoint-list", "--name", "--", domain]).output.split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Starts a push-mode backup of `targets` (disk → new qcow2 file on the hypervisor) and
    /// creates checkpoint `checkpoint` (a new dirty bitmap per disk) at the same instant.
    /// With `since`, only the clusters written after that checkpoint are copied. QEMU copies
    /// in the background; `waitForJob` waits for it.
    public func beginPushBackup(_ domain: String, targets: [String: String], since: String?, checkpoint: String) throws {
        func escaped(_ text: String) -> String {
            text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "'", with: "&apos;")
                .replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        let disks = targets.sorted { $0.key < $1.key }
        let backup = "<domainbackup mode='push'>" + (since.map { "<incremental>\(escaped($0))</incremental>" } ?? "") + "<disks>"
            + disks.map { "<disk name='\(escaped($0.key))' type='file'><target file='\(escaped($0.value))'/><driver type='qcow2'/></disk>" }.joined()
            + "</disks></domainbackup>"
        let checkpointXML = "<domaincheckpoint><name>\(escaped(checkpoint))</name><disks>"
            + disks.map { "<disk name='\(escaped($0.key))' checkpoint='bitmap'/>" }.joined() + "</disks></domaincheckpoint>"
        // The XML goes through files on the hypervisor: virsh reads both from paths.
        let scratch = try run(["mktemp", "-d", "/tmp/lifeboat-backup.XXXXXX"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? run(["rm", "-rf", scratch]) }
        try run(["sh", "-c", "cat > \"$0\"", "\(scratch)/backup.xml"], input: Data(backup.utf8))
        try run(["sh", "-c", "cat > \"$0\"", "\(scratch)/checkpoint.xml"], input: Data(checkpointXML.utf8))
        try virsh(["backup-begin", "--domain", domain, "--backupxml", "\(scratch)/backup.xml", "--checkpointxml", "\(scratch)/checkpoint.xml"])
    }

    /// Waits until the domain's block job (a push backup) has ended, and throws unless it completed.
    public func waitForJob(_ domain: String, pollSeconds: Double = 0.2) throws {
        while try virsh(["domjobinfo", "--", domain]).output.contains("Backup") {
            Thread.sleep(forTimeInterval: pollSeconds)
        }
        let completed = try virsh(["domjobinfo", "--completed", "--", domain]).output
        guard completed.contains("Completed") else {
            throw HostCommandFailed(host: name, command: "virsh backup-begin \(domain)", status: 1,
                                    stderr: "the backup job did not complete: \(completed)")
        }
    }

    public func deleteCheckpoint(_ domain: String, _ checkpoint: String) throws {
        try virsh(["checkpoint-delete", "--domain", domain, "--checkpointname", checkpoint])
    }

    /// Stops a running block job, if any (a push backup of a failed job).
    public func abortJob(_ domain: String) {
        _ = try? virsh(["domjobabort", "--", domain])
    }

    public func chain(of path: String) throws -> ImageChain {
        try ImageChain(qemuImgInfo: shell.checked(ImageChain.infoCommand(path), host: name).stdout)
    }

    public func fileExists(_ path: String) throws -> Bool {
        try shell.run(Shell.command(["test", "-e", path])).status == 0
    }

    /// The hypervisor's own idea of its name (saved with backups, with the host key).
    public func hostname() throws -> String {
        try virsh(["hostname"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
