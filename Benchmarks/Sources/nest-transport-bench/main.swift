// nest-transport-bench: unary calls over NestTransport beside the references, in one run.
//
//   nest-transport-bench [--duration SECONDS] [--sizes 100,4096] [--concurrency 1,16,64] [--connections 1,4]
//                        [--transports nest,http2,inprocess,raw] [--rounds N]
//
// For each message size, concurrency and connection count it measures four transports:
// nest (NestTransport, client and server as separate processes), http2 (grpc-swift's
// HTTP/2 transport, separate processes), inprocess (GRPCCore's in-process transport, one
// process: the floor every GRPCCore transport inherits) and raw (a SwiftNIO echo of the
// same length-prefixed frames, separate processes: the machine's limit). It prints calls
// per second, p50 and p99 latency, CPU and allocations per call (client + server) and the
// server's peak RSS, then the ratios the transport is judged by. With --rounds N the whole
// table is measured N times over (each round's rows one after the other, so that the
// transports compared meet the same moment of a noisy machine) and each ratio is given per
// round and as the median of the rounds.
import Foundation
import GRPCCore
import GRPCInProcessTransport
import GRPCNIOTransportHTTP2
import Histogram
import NIOCore
import NIOPosix
import NestBenchSupport
import NestProto
import NestProtoTesting
import NestTransport

// MARK: Server mode: `nest-transport-bench serve nest|http2|raw` prints "port N", then
// answers each line "allocations" on its input with its allocation totals.

func serve(_ kind: String) async throws {
  Allocations.start()
  Thread.detachNewThread {
    while let line = readLine() {
      guard line == "allocations" else { continue }
      print(Allocations.now().line)
      fflush(nil)
    }
  }
  switch kind {
  case "nest":
    let transport = NestServerTransport(.init(port: 0, peerName: "bench", maxConcurrentCalls: 1024))
    let server = GRPCServer(transport: transport, services: [BenchEcho()])
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await server.serve() }
      print("port \(try await transport.listeningAddress().port!)")
      fflush(nil)
    }
  case "http2":
    let transport = HTTP2ServerTransport.Posix(
      address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext)
    let server = GRPCServer(transport: transport, services: [BenchEcho()])
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { try await server.serve() }
      print("port \(try await transport.listeningAddress.ipv4!.port)")
      fflush(nil)
    }
  case "raw":
    let channel = try await runRawEchoServer()
    print("port \(channel.localAddress!.port!)")
    fflush(nil)
    try await channel.closeFuture.get()
  default:
    fatalError("unknown server kind \(kind)")
  }
}

if CommandLine.arguments.dropFirst().first == "serve" {
  try await serve(CommandLine.arguments[2])
  exit(0)
}

// MARK: Measuring

struct Measurement {
  var calls = 0
  var seconds = 0.0
  var p50Microseconds = 0.0
  var p99Microseconds = 0.0
  var cpuMicrosecondsPerCall = 0.0
  /// Client and server together.
  var allocationsPerCall = 0.0
  var serverPeakRSSMegabytes: Double? = nil
}

func processCPUSeconds() -> Double {
  var usage = rusage()
  getrusage(RUSAGE_SELF.rawValue, &usage)
  return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
    + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// utime + stime of another process, from /proc.
func cpuSeconds(of pid: Int32) -> Double {
  guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
    let close = stat.lastIndex(of: ")")
  else { return 0 }
  let fields = stat[stat.index(after: close)...].split(separator: " ")
  let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
  return ((Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)) / ticks
}

func peakRSSMegabytes(of pid: Int32) -> Double? {
  guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
    let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
    let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
  else { return nil }
  return kilobytes / 1024
}

/// `concurrency` tasks calling in a loop for `duration`, spread over `callers`.
func drive(
  concurrency: Int, duration: Duration, callers: [@Sendable () async throws -> Void]
) async throws -> (calls: Int, latencies: [UInt64]) {
  let deadline = ContinuousClock.now + duration
  return try await withThrowingTaskGroup(of: [UInt64].self) { group in
    for task in 0..<concurrency {
      let call = callers[task % callers.count]
      group.addTask {
        var latencies: [UInt64] = []
        latencies.reserveCapacity(1 << 16)
        while ContinuousClock.now < deadline {
          let start = ContinuousClock.now
          try await call()
          let elapsed = ContinuousClock.now - start
          latencies.append(
            UInt64(elapsed.components.seconds) * 1_000_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000))
        }
        return latencies
      }
    }
    var all: [UInt64] = []
    for try await latencies in group { all += latencies }
    return (all.count, all)
  }
}

func measure(
  concurrency: Int, duration: Duration, server: ServerProcess?, callers: [@Sendable () async throws -> Void]
) async throws -> Measurement {
  let serverPID = server?.process.processIdentifier
  _ = try await drive(concurrency: concurrency, duration: .milliseconds(300), callers: callers)  // warm up
  let serverAllocationsBefore = try server?.allocations()
  let allocationsBefore = Allocations.now()
  let cpuBefore = processCPUSeconds() + (serverPID.map(cpuSeconds(of:)) ?? 0)
  let start = ContinuousClock.now
  let (calls, latencies) = try await drive(concurrency: concurrency, duration: duration, callers: callers)
  let elapsed = ContinuousClock.now - start
  let cpu = processCPUSeconds() + (serverPID.map(cpuSeconds(of:)) ?? 0) - cpuBefore
  var allocations = Allocations.now() - allocationsBefore
  if let server, let before = serverAllocationsBefore {
    allocations.mallocs += try server.allocations().mallocs - before.mallocs
  }
  var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
  for latency in latencies { _ = histogram.record(max(latency, 1)) }
  let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
  return Measurement(
    calls: calls, seconds: seconds,
    p50Microseconds: Double(histogram.valueAtPercentile(50)) / 1000,
    p99Microseconds: Double(histogram.valueAtPercentile(99)) / 1000,
    cpuMicrosecondsPerCall: cpu * 1e6 / Double(max(calls, 1)),
    allocationsPerCall: Double(allocations.mallocs) / Double(max(calls, 1)),
    serverPeakRSSMegabytes: serverPID.flatMap(peakRSSMegabytes(of:)))
}

/// `nest-transport-bench serve KIND` as a child process: its port, and its allocation
/// totals when asked.
final class ServerProcess {
  let process = Process()
  let port: Int
  private let input = Pipe()
  private let output = Pipe()
  private var buffered = Data()

  init(_ kind: String) throws {
    self.process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    self.process.arguments = ["serve", kind]
    self.process.standardInput = self.input
    self.process.standardOutput = self.output
    try self.process.run()
    let line = try Self.readLine(from: self.output, buffered: &self.buffered)
    guard let port = line.split(separator: " ").last.flatMap({ Int($0) }) else {
      throw CocoaError(.fileReadCorruptFile)
    }
    self.port = port
  }

  func allocations() throws -> Allocations.Count {
    self.input.fileHandleForWriting.write(Data("allocations\n".utf8))
    guard let count = Allocations.Count(line: try Self.readLine(from: self.output, buffered: &self.buffered)) else {
      throw CocoaError(.fileReadCorruptFile)
    }
    return count
  }

  private static func readLine(from output: Pipe, buffered: inout Data) throws -> String {
    while true {
      if let end = buffered.firstIndex(of: UInt8(ascii: "\n")) {
        let line = String(decoding: buffered[..<end], as: UTF8.self)
        buffered.removeSubrange(...end)
        return line
      }
      let chunk = output.fileHandleForReading.availableData
      guard !chunk.isEmpty else { throw CocoaError(.fileReadUnknown) }
      buffered += chunk
    }
  }

  func stop() {
    self.process.terminate()
    self.process.waitUntilExit()
  }
}

/// Runs `body` with `count` GRPC clients, each its own transport (its own connection).
func withClients<T: ClientTransport, R: Sendable>(
  _ count: Int, _ makeTransport: () throws -> T, _ body: ([GRPCClient<T>]) async throws -> R
) async throws -> R {
  if count == 0 { return try await body([]) }
  return try await withGRPCClient(transport: try makeTransport()) { client in
    try await withClients(count - 1, makeTransport) { rest in try await body([client] + rest) }
  }
}

func echoCallers<T: ClientTransport>(_ clients: [GRPCClient<T>], bytes: Int) -> [@Sendable () async throws -> Void] {
  let request = benchRequest(bytes: bytes)
  return clients.map { client in
    let echo = Nest_Testing_V1_Echo.Client(wrapping: client)
    return { _ = try await echo.echo(request) }
  }
}

func run(_ kind: String, bytes: Int, concurrency: Int, connections: Int, duration: Duration) async throws
  -> Measurement
{
  if kind == "inprocess" {
    let transport = InProcessTransport()
    let server = GRPCServer(transport: transport.server, services: [BenchEcho()])
    return try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await server.serve() }
      defer { server.beginGracefulShutdown() }
      return try await withGRPCClient(transport: transport.client) { client in
        try await measure(
          concurrency: concurrency, duration: duration, server: nil,
          callers: echoCallers([client], bytes: bytes))
      }
    }
  }
  let server = try ServerProcess(kind)
  defer { server.stop() }
  let port = server.port
  switch kind {
  case "nest":
    return try await withClients(
      connections,
      {
        NestClientTransport(.init(port: port, peerName: "bench"))
      }
    ) { clients in
      try await measure(
        concurrency: concurrency, duration: duration, server: server, callers: echoCallers(clients, bytes: bytes))
    }
  case "http2":
    return try await withClients(
      connections,
      {
        try HTTP2ClientTransport.Posix(target: .ipv4(address: "127.0.0.1", port: port), transportSecurity: .plaintext)
      }
    ) { clients in
      try await measure(
        concurrency: concurrency, duration: duration, server: server, callers: echoCallers(clients, bytes: bytes))
    }
  case "raw":
    var clients: [RawEchoClient] = []
    for _ in 0..<connections { clients.append(try await RawEchoClient(port: port, bodyBytes: bytes)) }
    defer { clients.forEach { $0.channel.close(promise: nil) } }
    return try await measure(
      concurrency: concurrency, duration: duration, server: server,
      callers: clients.map { client in { try await client.call() } })
  default:
    fatalError("unknown transport \(kind)")
  }
}

// MARK: The run

func option(_ name: String) -> [Int]? {
  let arguments = CommandLine.arguments
  guard let index = arguments.firstIndex(of: name), arguments.indices.contains(index + 1) else { return nil }
  return arguments[index + 1].split(separator: ",").compactMap { Int($0) }
}

let durationSeconds = option("--duration")?.first ?? 2
let sizes = option("--sizes") ?? [100, 4096]
let concurrencies = option("--concurrency") ?? [1, 16, 64]
let connectionCounts = option("--connections") ?? [1, 4]
let kinds: [String] = {
  let arguments = CommandLine.arguments
  guard let index = arguments.firstIndex(of: "--transports"), arguments.indices.contains(index + 1) else {
    return ["nest", "http2", "inprocess", "raw"]
  }
  return arguments[index + 1].split(separator: ",").map(String.init)
}()
let rounds = option("--rounds")?.first ?? 1
Allocations.start()
let duration = Duration.seconds(durationSeconds)

func format(_ value: Double, _ decimals: Int = 0) -> String { String(format: "%.\(decimals)f", value) }

func median(_ values: [Double]) -> Double {
  let sorted = values.sorted()
  return sorted.count % 2 == 1
    ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

print(
  "nest-transport-bench: \(durationSeconds) s per row after a 0.3 s warm-up; \(ProcessInfo.processInfo.activeProcessorCount) cores"
    + (rounds > 1 ? "; \(rounds) rounds" : "")
)
print(
  "| \(rounds > 1 ? "round | " : "")size | conc | conns | transport | calls/s | p50 us | p99 us | CPU us/call | allocs/call | server peak RSS MB |"
)
print("|\(rounds > 1 ? "---:|" : "")---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
/// Each row's measurement in each round, by "kind/bytes/concurrency/connections".
var results: [String: [Measurement]] = [:]
for round in 1...rounds {
  for bytes in sizes {
    for concurrency in concurrencies {
      for connections in connectionCounts {
        for kind in kinds {
          // One in-process "connection" only: it has none.
          if kind == "inprocess" && connections != connectionCounts.first { continue }
          let result = try await run(
            kind, bytes: bytes, concurrency: concurrency, connections: connections, duration: duration)
          results["\(kind)/\(bytes)/\(concurrency)/\(connections)", default: []].append(result)
          let rate = Double(result.calls) / result.seconds
          print(
            "| \(rounds > 1 ? "\(round) | " : "")\(bytes) | \(concurrency) | \(kind == "inprocess" ? "-" : "\(connections)") | \(kind) | "
              + "\(format(rate)) | \(format(result.p50Microseconds)) | \(format(result.p99Microseconds)) | "
              + "\(format(result.cpuMicrosecondsPerCall, 1)) | \(format(result.allocationsPerCall, 1)) | "
              + "\(result.serverPeakRSSMegabytes.map { format($0, 1) } ?? "-") |")
          fflush(nil)
        }
      }
    }
  }
}

var clientRSS = rusage()
getrusage(RUSAGE_SELF.rawValue, &clientRSS)
print("\nclient process peak RSS over the whole run: \(format(Double(clientRSS.ru_maxrss) / 1024, 1)) MB")

/// A ratio of two rows' figures, per round and as the median of the rounds.
@MainActor func ratio(_ numerator: String, _ denominator: String, _ figure: (Measurement) -> Double) -> (
  median: Double, text: String
)? {
  guard let top = results[numerator], let bottom = results[denominator], top.count == bottom.count else { return nil }
  let each = zip(top, bottom).map { figure($0) / figure($1) }
  return (median(each), each.count > 1 ? " (rounds: \(each.map { format($0, 2) }.joined(separator: ", ")))" : "")
}
let callsPerSecond = { (measurement: Measurement) in Double(measurement.calls) / measurement.seconds }

print("\nRatios (nest against the references\(rounds > 1 ? "; the median of the rounds" : "")):")
for bytes in sizes {
  for connections in connectionCounts {
    let nest = { (c: Int) in "nest/\(bytes)/\(c)/\(connections)" }
    let row = { (c: Int) in "- \(bytes) B, c=\(c), \(connections) conn:" }
    if let c = concurrencies.max() {
      if let http2 = ratio(nest(c), "http2/\(bytes)/\(c)/\(connections)", callsPerSecond) {
        print("\(row(c)) nest/http2 calls/s = \(format(http2.median, 2))x (aim >= 3x)\(http2.text)")
      }
      let inprocessRow = "inprocess/\(bytes)/\(c)/\(connectionCounts.first!)"
      if let inprocess = ratio(nest(c), inprocessRow, callsPerSecond) {
        print("\(row(c)) nest/inprocess calls/s = \(format(inprocess.median, 2))x (aim >= 0.8x)\(inprocess.text)")
      }
      if let raw = ratio(nest(c), "raw/\(bytes)/\(c)/\(connections)", callsPerSecond) {
        print("\(row(c)) nest/raw calls/s = \(format(raw.median, 2))x\(raw.text)")
      }
    }
    if let c = concurrencies.min(),
      let latency = ratio(nest(c), "http2/\(bytes)/\(c)/\(connections)", \.p50Microseconds)
    {
      print("\(row(c)) nest p50 / http2 p50 = \(format(latency.median, 2)) (aim <= 0.25)\(latency.text)")
    }
  }
}
