// What the test targets share: where the repository and the built products are, and a way
// to run the tools the contract tests compare against (protoc, the generate scripts).
import Foundation

public enum Repository {
  /// The repository root, found from this file's place in it.
  public static let root: URL = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // NestProtoTesting
    .deletingLastPathComponent()  // Support
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()

  public static func path(_ relative: String) -> URL {
    self.root.appendingPathComponent(relative)
  }

  /// The folder `swift build` put this test bundle in, where the package's executables are.
  public static var productsDirectory: URL {
    let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var directory = executable.deletingLastPathComponent()
    while directory.path != "/" {
      if FileManager.default.fileExists(atPath: directory.appendingPathComponent("protoc-gen-nest-swift").path) {
        return directory
      }
      directory = directory.deletingLastPathComponent()
    }
    return executable.deletingLastPathComponent()
  }
}

/// The .proto files under `root`, relative to it, sorted: what protoc takes with `-I root`.
public func protoFiles(under root: URL) -> [String] {
  let enumerator = FileManager.default.enumerator(atPath: root.path)
  var files: [String] = []
  while let path = enumerator?.nextObject() as? String {
    if path.hasSuffix(".proto") { files.append(path) }
  }
  return files.sorted()
}

public struct ProcessResult: Sendable {
  public var status: Int32
  public var stdout: Data
  public var stderr: String
  public var stdoutText: String { String(decoding: self.stdout, as: UTF8.self) }
}

/// Runs `arguments[0]` (looked up on PATH, or a path) with `input` on stdin and `environment`
/// added to this process's, and waits for it.
public func run(
  _ arguments: [String], input: Data = Data(), in directory: URL? = nil, environment: [String: String] = [:]
) throws -> ProcessResult {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  process.arguments = arguments
  process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
  if let directory { process.currentDirectoryURL = directory }
  let stdin = Pipe.closedOnExec()
  let stdout = Pipe.closedOnExec()
  let stderr = Pipe.closedOnExec()
  process.standardInput = stdin
  process.standardOutput = stdout
  process.standardError = stderr
  try process.run()
  // Feed stdin and drain stderr beside stdout so a large payload cannot deadlock.
  let group = DispatchGroup()
  DispatchQueue.global().async(group: group) {
    stdin.fileHandleForWriting.write(input)
    try? stdin.fileHandleForWriting.close()
  }
  let errorBytes = LockedBox(Data())
  DispatchQueue.global().async(group: group) {
    errorBytes.value = stderr.fileHandleForReading.readDataToEndOfFile()
  }
  let outputBytes = stdout.fileHandleForReading.readDataToEndOfFile()
  group.wait()
  process.waitUntilExit()
  return ProcessResult(
    status: process.terminationStatus, stdout: outputBytes,
    stderr: String(decoding: errorBytes.value, as: UTF8.self))
}

/// Stops a child process: SIGTERM, then SIGKILL if it is still running after `grace`.
/// Polls rather than `waitUntilExit()`, which can wait forever on a child that ignores
/// SIGTERM (its disposition inherited from a parent that ignores it for its own handlers).
public func stop(_ process: Process, grace: Duration = .seconds(5)) {
  guard process.isRunning else { return }
  process.terminate()
  func exited(within limit: Duration) -> Bool {
    let deadline = ContinuousClock.now + limit
    while process.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
    return !process.isRunning
  }
  if exited(within: grace) { return }
  kill(process.processIdentifier, SIGKILL)
  _ = exited(within: grace)
}

extension Pipe {
  /// A pipe whose descriptors no child inherits but the one it is handed to (Process puts it
  /// on the child's 0, 1 or 2, which clears the flag there). Without it, a child started at
  /// the same moment by another test would hold this pipe's write end, and its reader would
  /// never see end of file.
  public static func closedOnExec() -> Pipe {
    let pipe = Pipe()
    for descriptor in [pipe.fileHandleForReading.fileDescriptor, pipe.fileHandleForWriting.fileDescriptor] {
      _ = fcntl(descriptor, F_SETFD, fcntl(descriptor, F_GETFD) | FD_CLOEXEC)
    }
    return pipe
  }
}

private final class LockedBox<Value>: @unchecked Sendable {
  private let lock = NSLock()
  private var stored: Value
  init(_ value: Value) { self.stored = value }
  var value: Value {
    get { self.lock.withLock { self.stored } }
    set { self.lock.withLock { self.stored = newValue } }
  }
}

/// An executable of this package as a child process, its stdout collected line by line so
/// a test can wait for what it prints ("listening on ...", "started ...").
public final class ChildProcess: @unchecked Sendable {
  // @unchecked: `collected` is guarded by `lock`; `process` is only read after run().
  public let process: Process
  private let lock = NSLock()
  private var collected: [String] = []

  public init(_ executable: String, arguments: [String], environment: [String: String]? = nil) throws {
    let process = Process()
    process.executableURL = Repository.productsDirectory.appendingPathComponent(executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let output = Pipe.closedOnExec()
    process.standardOutput = output
    self.process = process
    output.fileHandleForReading.readabilityHandler = { [weak self] handle in
      let data = handle.availableData
      guard !data.isEmpty else {
        handle.readabilityHandler = nil
        return
      }
      let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
      self?.lock.withLock { self?.collected += lines }
    }
    try process.run()
  }

  public var lines: [String] { self.lock.withLock { self.collected } }

  /// The first line starting with `prefix`, waiting up to `timeout` for it.
  public func line(startingWith prefix: String, timeout: Duration = .seconds(20)) async -> String? {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      if let line = self.lines.first(where: { $0.hasPrefix(prefix) }) { return line }
      try? await Task.sleep(for: .milliseconds(20))
    }
    return self.lines.first { $0.hasPrefix(prefix) }
  }

  /// The port of the "listening on HOST:PORT" line.
  public func port() async throws -> Int {
    guard let line = await self.line(startingWith: "listening on "),
      let port = line.split(separator: ":").last.flatMap({ Int($0) })
    else { throw CocoaError(.fileReadUnknown) }
    return port
  }

  /// SIGTERM (graceful), then the exit status.
  public func stop() -> Int32 {
    self.process.terminate()
    self.process.waitUntilExit()
    return self.process.terminationStatus
  }

  /// The exit status once the process ends by itself within `timeout`; nil if it did not.
  public func waitForExit(timeout: Duration = .seconds(15)) async -> Int32? {
    let deadline = ContinuousClock.now + timeout
    while self.process.isRunning && ContinuousClock.now < deadline {
      try? await Task.sleep(for: .milliseconds(20))
    }
    return self.process.isRunning ? nil : self.process.terminationStatus
  }
}
