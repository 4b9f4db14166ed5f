import AMQP
import ArgumentParser
import Events
import Foundation
import Publisher
import Workers

/// Sends one request with confirms; with `--follow`, prints its results.
private func send(_ request: InboundRequest, follow: Bool, options: FollowOptions) async throws {
    bootstrapLogging(defaultLevel: .warning)
    let settings = try WorkerConfiguration.amqpSettings()
    let follower = follow ? ResultFollower(settings: settings, bindingKey: "#") : nil
    await follower?.ready()
    let publisher = LifeboatPublisher(settings: settings)
    do {
        try await publisher.send(request)
    } catch {
        await publisher.shutdown()
        throw ValidationError("the request was not sent: \(error)")
    }
    await publisher.shutdown()
    if !options.json {
        print("sent \(request.job.operation.rawValue) request \(request.requestId)")
    }
    if let follower {
        let code = await follower.follow(options, requestId: request.requestId)
        if code != 0 { throw ExitCode(code) }
    }
}

private func newRequestId() -> String { "req-" + UUID().uuidString.lowercased() }

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "backup", abstract: "Request a backup of an instance.")

    @Option(help: "The instance's project (Keystone project id).") var project: String
    @Option(help: "The instance (Nova server id).") var instance: String
    @Option(help: "full or incremental (an incremental falls back to full when it has to, and says so).")
    var mode: BackupMode = .incremental
    @Option(name: .customLong("file"), help: "A disk image on the worker's host: NAME=PATH[:raw|qcow2]. Repeatable.")
    var files: [String] = []
    @Option(help: "A libvirt domain on a hypervisor: HOST/DOMAIN.") var libvirt: String?
    @Option(help: "An RBD image in a configured Ceph cluster: NAME=CLUSTER:POOL/IMAGE. Repeatable (one cluster).")
    var rbd: [String] = []
    @Option(help: "A Cinder volume read by disk attachment: NAME=VOLUME_ID. Repeatable.")
    var volume: [String] = []
    @Option(help: "The idempotency key; the same id twice is one job.") var requestId: String?
    @Option(help: "The protection policy asking for it.") var policy: String?
    @Flag(help: "Print the job's results until it ends.") var follow = false
    @OptionGroup var output: FollowOptions

    func run() async throws {
        var source: BackupSource?
        if !files.isEmpty {
            source = .files(disks: try files.map(Self.parseFile))
        } else if let libvirt {
            let parts = libvirt.split(separator: "/", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--libvirt takes HOST/DOMAIN") }
            source = .libvirt(host: parts[0], domain: parts[1], disks: nil)
        } else if !rbd.isEmpty {
            let parsed = try rbd.map(Self.parseRBD)
            guard Set(parsed.map(\.cluster)).count == 1 else { throw ValidationError("--rbd images must all be in one cluster") }
            source = .rbd(cluster: parsed[0].cluster, disks: parsed.map(\.disk))
        } else if !volume.isEmpty {
            source = .cinder(disks: try volume.map { text in
                let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { throw ValidationError("--volume takes NAME=VOLUME_ID, not \(text)") }
                return CinderDisk(name: parts[0], volume: parts[1])
            })
        }
        let request = BackupRequest(requestId: requestId ?? newRequestId(), project: project, instance: instance, mode: mode,
                                    source: source, policy: policy)
        try await send(.backup(try Self.validated(request)), follow: follow, options: output)
    }

    static func parseFile(_ text: String) throws -> LocalDisk {
        let nameAndRest = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard nameAndRest.count == 2 else { throw ValidationError("--file takes NAME=PATH[:FORMAT], not \(text)") }
        var path = nameAndRest[1]
        var format = DiskFormat.raw
        if let colon = path.lastIndex(of: ":"), let parsed = DiskFormat(rawValue: String(path[path.index(after: colon)...])) {
            format = parsed
            path = String(path[..<colon])
        }
        return LocalDisk(name: nameAndRest[0], path: path, format: format)
    }

    static func parseRBD(_ text: String) throws -> (cluster: String, disk: RBDDisk) {
        let nameAndRest = text.split(separator: "=", maxSplits: 1).map(String.init)
        let clusterAndSpec = nameAndRest.count == 2 ? nameAndRest[1].split(separator: ":", maxSplits: 1).map(String.init) : []
        let poolAndImage = clusterAndSpec.count == 2 ? clusterAndSpec[1].split(separator: "/", maxSplits: 1).map(String.init) : []
        guard poolAndImage.count == 2 else { throw ValidationError("--rbd takes NAME=CLUSTER:POOL/IMAGE, not \(text)") }
        return (clusterAndSpec[0], RBDDisk(name: nameAndRest[0], pool: poolAndImage[0], image: poolAndImage[1]))
    }

    /// The worker would refuse an invalid request anyway; refusing it here saves a round trip
    /// and puts the reason in front of the person who typed it.
    static func validated<M: LifeboatMessage>(_ message: M) throws -> M {
        do {
            return try MessageCodec.decode(M.self, from: MessageCodec.encode(message))
        } catch {
            throw ValidationError("\(error)")
        }
    }
}

extension BackupMode: ExpressibleByArgument {}
extension DiskFormat: ExpressibleByArgument {}

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "restore", abstract: "Request a restore of a backup.")

    @Option(help: "The project the backup belongs to.") var project: String
    @Option(help: "The backup to restore.") var backup: String
    @Option(help: "Who asks (Keystone user id); checked against the target project.") var user: String
    @Option(help: "The user's Keystone domain.") var userDomain: String?
    @Option(help: "Write the disks as image files into this directory on a worker's host.") var toFiles: String?
    @Option(help: "Image format for --to-files.") var format: DiskFormat = .raw
    @Option(help: "Recreate the disks and define the domain on this hypervisor (HOST).") var toLibvirt: String?
    @Option(help: "Name of the restored domain or server.") var name: String?
    @Flag(help: "Start the restored domain.") var start = false
    @Option(help: "Write the disks as new RBD images: CLUSTER:POOL.") var toRbd: String?
    @Option(help: "Prefix of the new RBD images' names (default: the backup's id and a dash).") var imagePrefix: String?
    @Flag(help: "With --to-rbd: write over existing images of the same names.") var overwrite = false
    @Option(help: "Restore as a new OpenStack server in this project (Keystone project id).") var toProject: String?
    @Option(help: "With --to-project: the flavor (name or id; default: the saved one).") var flavor: String?
    @Option(help: "With --to-project: a network (name or id) of the target project. Repeatable (default: the saved ones).")
    var network: [String] = []
    @Option(help: "With --to-project: a key pair of Lifeboat's user (default: the saved one, recreated where missing).") var keypair: String?
    @Flag(help: "With --to-project: the disks as Glance images (any storage backend) instead of Cinder volumes written through Ceph.")
    var asImages = false
    @Option(help: "Restore only this disk. Repeatable.") var disk: [String] = []
    @Option(help: "The idempotency key.") var requestId: String?
    @Flag(help: "Print the job's results until it ends.") var follow = false
    @OptionGroup var output: FollowOptions

    func run() async throws {
        let target: RestoreTarget
        switch (toFiles, toLibvirt, toRbd, toProject) {
        case (let directory?, nil, nil, nil): target = .files(directory: directory, format: format)
        case (nil, let host?, nil, nil): target = .libvirt(host: host, name: name, storageDirectory: nil, start: start)
        case (nil, nil, let spec?, nil):
            let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--to-rbd takes CLUSTER:POOL, not \(spec)") }
            target = .rbd(cluster: parts[0], pool: parts[1], imagePrefix: imagePrefix, overwrite: overwrite)
        case (nil, nil, nil, let project?): target = .instance(project: project, name: name, flavor: flavor, networks: network.isEmpty ? nil : network,
                                                                      keypair: keypair, disksAs: asImages ? .images : nil)
        default: throw ValidationError("name exactly one target: --to-files, --to-libvirt, --to-rbd or --to-project")
        }
        let request = RestoreRequest(requestId: requestId ?? newRequestId(), project: project, backupId: backup, target: target,
                                     disks: disk.isEmpty ? nil : disk, requestedBy: Principal(userId: user, userDomain: userDomain))
        try await send(.restore(try BackupCommand.validated(request)), follow: follow, options: output)
    }
}

struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel a running job; it cleans up after itself.")

    @Option(help: "The job's project.") var project: String
    @Option(help: "The job to cancel.") var job: String
    @Flag(help: "Print results until the cancel is settled.") var follow = false
    @OptionGroup var output: FollowOptions

    func run() async throws {
        let request = CancelRequest(requestId: newRequestId(), jobId: job, project: project)
        try await send(.cancel(try BackupCommand.validated(request)), follow: follow, options: output)
    }
}

struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send", abstract: "Send a request written as JSON (see schemas/), from a file or - for standard input.")

    @Argument(help: "The request file, or - for standard input.") var file: String
    @Flag(help: "Print the job's results until it ends.") var follow = false
    @OptionGroup var output: FollowOptions

    func run() async throws {
        let body = file == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: file))
        let request: InboundRequest
        do {
            request = try InboundRequest.decode(body)
        } catch {
            throw ValidationError("\(file): \(error)")
        }
        try await send(request, follow: follow, options: output)
    }
}

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch", abstract: "Print results as they are published: state changes, and progress bars.")

    @Option(help: "Only this project's jobs.") var project: String?
    @Option(help: "Only this instance's jobs.") var instance: String?
    @Option(help: "Only this job.") var job: String?
    @OptionGroup var output: FollowOptions

    func run() async throws {
        bootstrapLogging(defaultLevel: .warning)
        // The same routing a monitor of its own would bind: project.instance.job.status.
        let key = [project ?? "*", instance ?? "*", job ?? "*", "*"].joined(separator: ".")
        let follower = ResultFollower(settings: try WorkerConfiguration.amqpSettings(), bindingKey: key)
        // Following one job ends with it; watching many runs until interrupted (or --until/--timeout).
        let code = await follower.follow(output, stopAtFinal: job != nil)
        if code != 0 && code != 3 { throw ExitCode(code) }
    }
}
