import Foundation

/// Runs commands on this host with `/bin/sh -c`: the `HostShell` of a worker that runs on the
/// hypervisor itself (no SSH hop), and how the tests check the image readers on real qcow2
/// chains without a network in between.
public struct LocalShell: HostShell {
    public init() {}

    public func run(_ command: String, input: Data?) throws -> ShellResult {
        var stdout = Data()
        var result = try stream(command, input: input) { stdout.append(contentsOf: $0) }
        result.stdout = stdout
        return result
    }

    public func stream(_ command: String, input: Data?, into body: (UnsafeRawBufferPointer) throws -> Void) throws -> ShellResult {
        let running = try RunningCommand(command)
        let feeder = Thread { [running] in
            if let input { try? running.stdin.fileHandleForWriting.write(contentsOf: input) }
            try? running.stdin.fileHandleForWriting.close()
        }
        feeder.start()
        var failure: (any Error)?
        let handle = running.stdout.fileHandleForReading
        while true {
            let block = handle.availableData
            if block.isEmpty { break }
            do {
                try block.withUnsafeBytes { try body($0) }
            } catch {
                failure = error
                running.process.terminate()
                break
            }
        }
        let result = running.wait()
        if let failure { throw failure }
        return result
    }

    public func open(_ command: String) throws -> any ShellInput { try RunningCommand(command) }
}

/// A child `/bin/sh -c` with its three pipes; stderr is drained on a thread of its own so a
/// chatty command never blocks on it.
final class RunningCommand: ShellInput, @unchecked Sendable {
    let process = Process()
    let stdin = Pipe()
    let stdout = Pipe()
    private let stderr = Pipe()
    private let errors = NSMutableData()
    private let drained = DispatchSemaphore(value: 0)

    init(_ command: String) throws {
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        Thread { [self] in
            errors.append(stderr.fileHandleForReading.readDataToEndOfFile())
            drained.signal()
        }.start()
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        try stdin.fileHandleForWriting.write(contentsOf: Data(bytes))
    }

    func finish() throws -> ShellResult {
        try? stdin.fileHandleForWriting.close()
        _ = stdout.fileHandleForReading.readDataToEndOfFile()
        return wait()
    }

    func wait() -> ShellResult {
        process.waitUntilExit()
        drained.wait()
        return ShellResult(status: process.terminationStatus, stdout: Data(), stderr: String(decoding: errors as Data, as: UTF8.self))
    }
}
