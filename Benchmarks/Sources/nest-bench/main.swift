// nest-bench orders: the four services as separate processes, started as the executables
// are (NestTestKit's processes mode over LocalPlatform; this binary stands in for the four
// executables and runs each service's definition through NestService, as they do), many
// customers buying a scenario-3 service concurrently (NestScenarios' set-up and purchase),
// and in the same run the limits it is compared with: SQLite's durable commit rate on the
// same disk and the single-call RPC rate of one service.
//
//   swift build -c release --package-path Benchmarks --product nest-bench
//   Benchmarks/.build/release/nest-bench orders --orders 2000 --customers 16
import Foundation
import FoundationNetworking
import GRDB
import GRPCCore
import Histogram
import NestAuth
import NestProto
import NestScenarios
import NestServiceKit
import NestTestKit
import NestTransport

let arguments = Array(CommandLine.arguments.dropFirst())

func option(_ name: String, _ fallback: Int) -> Int {
  guard let index = arguments.firstIndex(of: "--\(name)"), index + 1 < arguments.count else { return fallback }
  return Int(arguments[index + 1]) ?? fallback
}

func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

// MARK: As a service executable: LocalPlatform runs this binary as `<service>-service`

let invokedAs = URL(fileURLWithPath: CommandLine.arguments[0]).lastPathComponent
if let service = NestServiceName.allCases.first(where: { $0.executable == invokedAs }) {
  // The flags LocalPlatform passes (`--commission-bps 500` is the setting commission.bps; a
  // flag without a value, `--exit-with-stdin`, is the setting exit.with.stdin = true).
  var flags: [String: String] = [:]
  var index = 0
  while index < arguments.count {
    let name = arguments[index]
    index += 1
    guard name.hasPrefix("--") else { continue }
    let key = name.dropFirst(2).replacingOccurrences(of: "-", with: ".")
    if index < arguments.count, !arguments[index].hasPrefix("--") {
      flags[key] = arguments[index]
      index += 1
    } else {
      flags[key] = "true"
    }
  }
  let configuration = try await ServiceConfiguration.load(service, flags: flags, environment: [:])
  try await NestService.runExecutable(NestTestPlatform.definitions[service]!, configuration: configuration)
  exit(0)
}

if arguments.first == "database" {
  try databaseBench(operations: option("operations", 20_000), rounds: option("rounds", 3))
  exit(0)
}

guard ["orders", "transports", "events"].contains(arguments.first ?? "") else {
  print("usage: nest-bench orders [--orders N] [--customers N] [--rate R] [--commits N] [--calls N] [--renewals N]")
  print("       nest-bench transports [--seconds N]")
  print("       nest-bench events [--events N] [--subjects N] [--webhooks N]")
  print("       nest-bench database [--operations N] [--rounds N]")
  exit(2)
}

let orderCount = option("orders", 2000)
let customers = option("customers", 16)

// The four "executables": links to this binary, named as LocalPlatform looks for them.
let executables = FileManager.default.temporaryDirectory.appendingPathComponent("nest-bench-bin-\(UUID().uuidString)")
try FileManager.default.createDirectory(at: executables, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: executables) }
let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
for service in NestServiceName.allCases {
  try FileManager.default.createSymbolicLink(
    at: executables.appendingPathComponent(service.executable), withDestinationURL: binary)
}

if arguments.first == "events" {
  try await eventsBench(
    executables: executables, events: option("events", 20_000), subjects: option("subjects", 200),
    webhooks: option("webhooks", 1))
  try? FileManager.default.removeItem(at: executables)
  exit(0)
}

if arguments.first == "transports" {
  try await transportsBench(executables: executables, seconds: option("seconds", 3), concurrencies: [1, 16, 64])
  try? FileManager.default.removeItem(at: executables)
  exit(0)
}

// MARK: The limits, measured first on the same disk

extension Duration {
  var seconds: Double { Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18 }
}

/// Durable single-row commits per second: WAL, synchronous=FULL, one transaction each.
func commitRate(_ count: Int, in directory: URL) throws -> Double {
  let pool = try ServiceDatabase.open(path: directory.appendingPathComponent("commits.sqlite").path) { migrator in
    migrator.registerMigration("t") { try $0.create(table: "t") { $0.column("v", .blob) } }
  }
  let start = ContinuousClock.now
  for index in 0..<count {
    try pool.write {
      try $0.execute(sql: "INSERT INTO t (v) VALUES (?)", arguments: [Data(repeating: UInt8(index & 0xFF), count: 600)])
    }
  }
  return Double(count) / (ContinuousClock.now - start).seconds
}

/// What a process has written so far with write calls of every kind (files and sockets:
/// /proc/PID/io's wchar and syscw), so that the I/O an order costs shows beside its CPU.
func written(_ pid: Int32) -> (bytes: Double, calls: Double) {
  let io = (try? String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8)) ?? ""
  return (procField(io, "wchar:"), procField(io, "syscw:"))
}

/// The number after `key` in a /proc file of "key: value" lines (0 if there is none).
func procField(_ text: String, _ key: String) -> Double {
  let line = text.split(separator: "\n").first { $0.hasPrefix(key) } ?? ""
  return Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
}

/// user+system CPU seconds and peak/current RSS of a process.
func usage(_ pid: Int32) -> (cpu: Double, rssMiB: Double, peakMiB: Double) {
  let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
  let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
  let ticks = fields.count > 13 ? (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0) : 0
  let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
  return (
    ticks / Double(sysconf(Int32(_SC_CLK_TCK))), procField(status, "VmRSS:") / 1024, procField(status, "VmHWM:") / 1024
  )
}

// MARK: The four processes and a scenario-3 product

let platform = try await NestTestPlatform.start(.processes(executables: executables))
let local = platform.processes!
let pids = Dictionary(uniqueKeysWithValues: NestServiceName.allCases.map { ($0, local.pid($0)!) })

/// Each service's database commits so far, from its admin port's /metrics
/// (nest_db_commit_duration_count).
func commitCounts() async -> [NestServiceName: Double] {
  var counts: [NestServiceName: Double] = [:]
  for service in NestServiceName.allCases {
    let admin = local.adminAddresses[service]!
    guard let url = URL(string: "http://\(admin.host):\(admin.port)/metrics"),
      let (data, _) = try? await URLSession.shared.data(from: url)
    else { continue }
    let line = String(decoding: data, as: UTF8.self).split(separator: "\n").first {
      $0.hasPrefix("nest_db_commit_duration_count")
    }
    counts[service] = line.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) }
  }
  return counts
}

let setup = try await platform.marketplace.setUp(
  .scenario3, parties: ScenarioParties(isv: "isv-bench", distributor: "dist-bench", customer: "c"))

/// The platform as one customer sees it: a connection of its own to marketplace-order.
struct CustomerPlatform: PlatformClients {
  let connections = SharedConnections()
  let tokens: NestTokens

  init(order: ServiceAddress, tokens: NestTokens) {
    self.tokens = tokens
    self.connections.add(
      .order, transport: NestClientTransport(.init(host: order.host, port: order.port, peerName: "nest-bench")))
  }

  func token(_ role: Nest_Common_V1_Role, _ subject: String) async throws -> String {
    try await self.tokens.sign(subject: subject, role: role)
  }

  func withClient<Result: Sendable>(
    _ service: NestServiceName, token: String, _ body: (any ServiceClients) async throws -> Result
  ) async throws -> Result {
    try await self.connections.withClient(service, token: token, body)
  }
}
let tokens = try await NestTokens(secret: try local.secret())

// MARK: Single-call RPC rate: GetProduct on catalog, one call at a time, one connection

let callCount = option("calls", 3000)
let rpcRate = try await platform.catalog(as: .customer, "c-rate") { catalog in
  _ = try await catalog.getProduct(.with { $0.key = .productID(setup.productID) })
  let start = ContinuousClock.now
  for _ in 0..<callCount { _ = try await catalog.getProduct(.with { $0.key = .productID(setup.productID) }) }
  return Double(callCount) / (ContinuousClock.now - start).seconds
}
let commits = try commitRate(option("commits", 2000), in: platform.directory)

// MARK: The load

let before = pids.mapValues(usage)
let writtenBefore = pids.mapValues(written)
let commitsBefore = await commitCounts()
let loadStart = ContinuousClock.now
// --rate R: open loop. Order i starts at i / R seconds whatever became of the others (its own
// task, on the connection of customer i mod N), so that a slow platform meets more load, not
// less; otherwise closed loop: each customer pays its next order when its previous one is paid.
let rate = option("rate", 0)
let paidAt: [(String, Int64)] = try await withThrowingTaskGroup(of: [(String, Int64)].self) { group in
  if rate > 0 {
    let platforms = (0..<customers).map { _ in CustomerPlatform(order: local.addresses[.order]!, tokens: tokens) }
    for index in 0..<orderCount {
      try await Task.sleep(until: loadStart + .nanoseconds(Int64(index) * 1_000_000_000 / Int64(rate)))
      let customer = index % customers
      group.addTask {
        let marketplace = Marketplace(platforms[customer])
        let order = try await marketplace.buy(
          "cust-\(customer)", product: setup.productID, pay: false, clientToken: "\(index)")
        let sent = now()
        _ = try await marketplace.pay(order, clientToken: "\(index)")
        return [(order.id, sent)]
      }
    }
    var all: [(String, Int64)] = []
    for try await paid in group { all += paid }
    for platform in platforms { await platform.connections.close() }
    return all
  }
  for customer in 0..<customers {
    group.addTask {
      let own = CustomerPlatform(order: local.addresses[.order]!, tokens: tokens)
      let marketplace = Marketplace(own)
      var paid: [(String, Int64)] = []
      for index in stride(from: customer, to: orderCount, by: customers) {
        let order = try await marketplace.buy(
          "cust-\(customer)", product: setup.productID, pay: false, clientToken: "\(index)")
        let sent = now()
        _ = try await marketplace.pay(order, clientToken: "\(index)")
        paid.append((order.id, sent))
      }
      await own.connections.close()
      return paid
    }
  }
  var all: [(String, Int64)] = []
  for try await paid in group { all += paid }
  return all
}
let paidSeconds = (ContinuousClock.now - loadStart).seconds

// Settled: every delivery of every order acknowledged. Read once, when nothing is pending.
var delivered: [String: Int64] = [:]
try await platform.orders(as: .operator, "op-bench") { orders in
  while try await !orders.listDeliveries(.with { $0.page = .with { $0.pageSize = 1 } }).deliveries.isEmpty {
    try await Task.sleep(for: .milliseconds(20))
  }
  let linked = try await Pages.all { token in
    let page = try await orders.listOrders(
      .with {
        $0.kind = .linked
        $0.page = .with {
          $0.pageSize = 500
          $0.pageToken = token
        }
      })
    return (page.orders, page.page?.nextPageToken ?? "")
  }
  let parents = Dictionary(uniqueKeysWithValues: linked.map { ($0.id, $0.parentOrderID) })
  let deliveries = try await Pages.all { token in
    let page = try await orders.listDeliveries(
      .with {
        $0.includeDelivered = true
        $0.page = .with {
          $0.pageSize = 500
          $0.pageToken = token
        }
      })
    return (page.deliveries, page.page?.nextPageToken ?? "")
  }
  for delivery in deliveries {
    let order = parents[delivery.orderID] ?? delivery.orderID
    delivered[order] = max(delivered[order] ?? 0, delivery.deliveredAtUnixMs)
  }
}
let settledSeconds = (ContinuousClock.now - loadStart).seconds
let after = pids.mapValues(usage)
let writtenAfter = pids.mapValues(written)
let commitsAfter = await commitCounts()

// MARK: Renewals in the mix (--renewals N): N of the instances renewed by their customers,
// the same 16 at a time, after the orders; a renewal is an order too (and its linked order).

let renewalCount = min(option("renewals", 0), orderCount)
var renewalFigures: (paid: Double, settled: Double, cpu: [NestServiceName: Double])? = nil
if renewalCount > 0 {
  let instances = try await platform.entitlement(as: .operator, "op-bench") { entitlement in
    try await Pages.all { token in
      let page = try await entitlement.listServiceInstances(
        .with {
          $0.page = .with {
            $0.pageSize = 500
            $0.pageToken = token
          }
        })
      return (page.instances, page.page?.nextPageToken ?? "")
    }
  }
  let chosen = Array(instances.prefix(renewalCount))
  let beforeRenewals = pids.mapValues(usage)
  let renewalStart = ContinuousClock.now
  try await withThrowingTaskGroup(of: Void.self) { group in
    for customer in 0..<customers {
      group.addTask {
        let own = CustomerPlatform(order: local.addresses[.order]!, tokens: tokens)
        let marketplace = Marketplace(own)
        for index in stride(from: customer, to: chosen.count, by: customers) {
          _ = try await marketplace.renew(chosen[index].customerID, instance: chosen[index].id)
        }
        await own.connections.close()
      }
    }
    try await group.waitForAll()
  }
  let renewalPaid = (ContinuousClock.now - renewalStart).seconds
  try await platform.orders(as: .operator, "op-bench") { orders in
    while try await !orders.listDeliveries(.with { $0.page = .with { $0.pageSize = 1 } }).deliveries.isEmpty {
      try await Task.sleep(for: .milliseconds(20))
    }
  }
  let renewalSettled = (ContinuousClock.now - renewalStart).seconds
  let afterRenewals = pids.mapValues(usage)
  renewalFigures = (
    Double(renewalCount) / renewalPaid, Double(renewalCount) / renewalSettled,
    afterRenewals.mapValues(\.cpu).merging(beforeRenewals.mapValues(\.cpu)) { $0 - $1 }
  )
}
// MARK: What one call costs: GetProduct at c=64 over one connection, CPU of the caller and
// catalog summed, to express an order's CPU in calls.
let callCPU = try await measureCalls(
  address: local.addresses[.catalog]!, token: try await tokens.sign(subject: "c-rate", role: .customer),
  request: .with { $0.key = .productID(setup.productID) }, concurrency: 64, seconds: option("call-seconds", 2),
  serverPID: pids[.catalog]!)
await platform.stop()

var histogram = Histogram<UInt64>(highestTrackableValue: 600_000, numberOfSignificantValueDigits: .three)
for (order, sent) in paidAt { histogram.record(UInt64(max(0, (delivered[order] ?? sent) - sent))) }

// Per order, by construction (see docs/benchmarks.md): RPCs between services and commits.
// RPCs: the customer's 2; CreateOrder asks 2 (GetSaleTerms, CheckDistribution); PayOrder 1
// (ReserveInstanceSlot; A's product came with the sale terms); the deliveries at most 2
// (one CreateServiceInstances and one RecordSales for the order's instance and two sales,
// calls which other orders' rows of the same round share).
let rpcsPerOrder = 2 + 2 + 1 + 2
// Commits: order 2 (create, pay) and its acknowledgements, one per dispatcher round (a
// payment's rows go out in one round);
// entitlement 1 (the slot) and the instance with its deployment, batched; settlement at most
// 1 (the two sales in one call).
let commitsPerOrder = 4

print(
  "nest-bench orders: \(orderCount) scenario-3 orders, \(customers) concurrent customers"
    + (rate > 0 ? ", open loop at \(rate) orders/s offered" : ""))
print(
  String(
    format: "  paid orders/s            %8.1f  (create + pay, %.1f s)", Double(orderCount) / paidSeconds, paidSeconds))
print(
  String(
    format: "  settled orders/s         %8.1f  (until every delivery acknowledged, %.1f s)",
    Double(orderCount) / settledSeconds, settledSeconds))
print(
  "  PayOrder -> settled      p50 \(histogram.valueAtPercentile(50)) ms   p99 \(histogram.valueAtPercentile(99)) ms   max \(histogram.max) ms"
)
print(String(format: "  limit: durable commits/s %8.1f  (SQLite WAL, synchronous=FULL, this disk)", commits))
print(String(format: "  limit: single-call RPC/s %8.1f  (catalog GetProduct, one at a time)", rpcRate))
print(
  String(
    format: "  ratio: settled orders/s to commits/s / %d commits per order: %.2f", commitsPerOrder,
    (Double(orderCount) / settledSeconds) / (commits / Double(commitsPerOrder))))
print(
  String(
    format: "  ratio: settled orders/s to RPC/s / %d RPCs per order: %.2f", rpcsPerOrder,
    (Double(orderCount) / settledSeconds) / (rpcRate / Double(rpcsPerOrder))))
print("  per service: commits per order, commits/s during the load")
for service in NestServiceName.allCases {
  let commits = (commitsAfter[service] ?? 0) - (commitsBefore[service] ?? 0)
  print(
    String(
      format: "    %-12@ %6.2f  %8.1f", service.rawValue as NSString, commits / Double(orderCount),
      commits / settledSeconds))
}
print("  per service: KiB written per order, write calls per order (files and sockets)")
for service in NestServiceName.allCases {
  let bytes = writtenAfter[service]!.bytes - writtenBefore[service]!.bytes
  let calls = writtenAfter[service]!.calls - writtenBefore[service]!.calls
  print(
    String(
      format: "    %-12@ %7.1f  %7.1f", service.rawValue as NSString, bytes / 1024 / Double(orderCount),
      calls / Double(orderCount)))
}
print("  per service: CPU s (CPU ms per order), RSS MiB now / peak")
for service in NestServiceName.allCases {
  let cpu = after[service]!.cpu - before[service]!.cpu
  print(
    String(
      format: "    %-12@ %6.2f s (%5.2f ms)  %6.1f / %6.1f", service.rawValue as NSString, cpu,
      cpu * 1000 / Double(orderCount),
      after[service]!.rssMiB, after[service]!.peakMiB))
}
let orderCPU =
  NestServiceName.allCases.reduce(0.0) { $0 + after[$1]!.cpu - before[$1]!.cpu } * 1e6
  / Double(orderCount)
print(
  String(
    format: "  one call: %.1f us CPU  (catalog GetProduct at c=64 over 1 connection, caller + catalog; %.0f calls/s)",
    callCPU.cpuPerCall, callCPU.rate))
print(
  String(
    format: "  ratio: CPU per order / CPU per call: %.1f calls' worth  (%.2f ms per order; %d RPCs per order)",
    orderCPU / callCPU.cpuPerCall, orderCPU / 1000, rpcsPerOrder))
if let renewalFigures {
  print("renewals in the mix: \(renewalCount) of the instances renewed, \(customers) concurrent customers")
  print(String(format: "  paid renewals/s          %8.1f  (create + pay)", renewalFigures.paid))
  print(String(format: "  settled renewals/s       %8.1f  (until every delivery acknowledged)", renewalFigures.settled))
  for service in NestServiceName.allCases {
    let cpu = renewalFigures.cpu[service] ?? 0
    print(
      String(
        format: "    %-12@ %6.2f s (%5.2f ms per renewal)", service.rawValue as NSString, cpu,
        cpu * 1000 / Double(renewalCount)))
  }
}
