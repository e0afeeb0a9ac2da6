// nest-bench orders: the four services as separate processes (this binary re-executed as
// `nest-bench serve <service>`, running the same server code as the service executables),
// many customers buying a scenario-3 service concurrently, and in the same run the limits
// it is compared with: SQLite's durable commit rate on the same disk and the single-call RPC
// rate of one service.
//
//   swift build -c release --package-path Benchmarks --product nest-bench
//   Benchmarks/.build/release/nest-bench orders --orders 2000 --customers 16
import Catalog
import Entitlement
import Foundation
import GRDB
import GRPCCore
import Histogram
import Logging
import MarketplaceOrder
import NestAuth
import NestProto
import NestServiceKit
import NestTransport
import Settlement

let arguments = Array(CommandLine.arguments.dropFirst())

func option(_ name: String, _ fallback: Int) -> Int {
  guard let index = arguments.firstIndex(of: "--\(name)"), index + 1 < arguments.count else { return fallback }
  return Int(arguments[index + 1]) ?? fallback
}

func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

// MARK: serve: one service in this process

if arguments.first == "serve" {
  let service = NestServiceName(rawValue: arguments[1])!
  let environment = ProcessInfo.processInfo.environment
  var peers: [NestServiceName: ServiceAddress] = [:]
  for peer in NestServiceName.allCases {
    peers[peer] = try ServiceAddress(parsing: environment["NEST_\(peer.rawValue.uppercased())_ADDRESS"]!)
  }
  let configuration = ServiceConfiguration(
    host: "127.0.0.1", port: peers[service]!.port, databasePath: environment["NEST_DATABASE"]!, peers: peers,
    authSecret: environment["NEST_AUTH_SECRET"]!, logLevel: "error")
  var logger = Logger(label: "bench.\(service.rawValue)")
  logger.logLevel = .error
  switch service {
  case .catalog: try await CatalogServer.run(configuration: configuration, logger: logger)
  case .entitlement: try await EntitlementServer.run(configuration: configuration, logger: logger)
  case .order: try await OrderServer.run(configuration: configuration, logger: logger)
  case .settlement: try await SettlementServer.run(configuration: configuration, logger: logger)
  }
  exit(0)
}

guard arguments.first == "orders" else {
  print("usage: nest-bench orders [--orders N] [--customers N] [--commits N] [--calls N]")
  exit(2)
}

let orderCount = option("orders", 2000)
let customers = option("customers", 16)
let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nest-bench-\(UUID().uuidString)")
try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: directory) }
let secret = "bench-secret-\(UUID().uuidString)"
var addresses: [NestServiceName: ServiceAddress] = [:]
for service in NestServiceName.allCases {
  addresses[service] = ServiceAddress(host: "127.0.0.1", port: try Readiness.freeLoopbackPort())
}

// MARK: The limits, measured first on the same disk

/// Durable single-row commits per second: WAL, synchronous=FULL, one transaction each.
func commitRate(_ count: Int) throws -> Double {
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

extension Duration {
  var seconds: Double { Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18 }
}

// MARK: The four processes

let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
var processes: [NestServiceName: Process] = [:]
for service in NestServiceName.allCases {
  let process = Process()
  process.executableURL = executable
  process.arguments = ["serve", service.rawValue]
  var environment = ProcessInfo.processInfo.environment
  environment["NEST_AUTH_SECRET"] = secret
  environment["NEST_DATABASE"] = directory.appendingPathComponent("\(service.rawValue).sqlite").path
  for (peer, address) in addresses { environment["NEST_\(peer.rawValue.uppercased())_ADDRESS"] = "\(address)" }
  process.environment = environment
  process.standardOutput = FileHandle.nullDevice
  try process.run()
  processes[service] = process
}
defer { for process in processes.values { process.terminate(); process.waitUntilExit() } }
for service in NestServiceName.allCases {
  guard await Readiness.waitUntilServing(addresses[service]!) else { fatalError("\(service) did not start") }
}

/// user+system CPU seconds and peak/current RSS of a process.
func usage(_ pid: Int32) -> (cpu: Double, rssMiB: Double, peakMiB: Double) {
  let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
  let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
  let ticks = fields.count > 13 ? (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0) : 0
  let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
  func kib(_ key: String) -> Double {
    let line = status.split(separator: "\n").first { $0.hasPrefix(key) } ?? ""
    return Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
  }
  return (ticks / Double(sysconf(Int32(_SC_CLK_TCK))), kib("VmRSS:") / 1024, kib("VmHWM:") / 1024)
}

let tokens = try await NestTokens(secret: secret)

func client<R: Sendable>(
  _ service: NestServiceName, _ role: Nest_Common_V1_Role, _ subject: String,
  _ body: (GRPCClient<NestClientTransport>) async throws -> R
) async throws -> R {
  let token = try await tokens.sign(subject: subject, role: role)
  return try await withGRPCClient(
    transport: NestClientTransport(.init(host: "127.0.0.1", port: addresses[service]!.port, peerName: "nest-bench")),
    interceptors: [BearerTokenClientInterceptor(token: token)]
  ) { try await body($0) }
}

func usd(_ amount: Int64) -> Nest_Common_V1_Money {
  .with {
    $0.currency = "USD"; $0.amountMinor = amount
  }
}

// A scenario-3 setup: A listed, B on it.
let product = try await client(.catalog, .isv, "isv-bench") { raw in
  let catalog = Nest_Catalog_V1_CatalogService.Client(wrapping: raw)
  let a = try await catalog.createService(
    .with {
      $0.name = "A"
      $0.type = .fullyManaged
      $0.deploymentPackage = .with {
        $0.artifactRef = "oci://bench/a:1"; $0.checksumSha256 = String(repeating: "ab", count: 32)
      }
    })
  _ = try await catalog.publishService(
    .with {
      $0.serviceID = a.service!.id; $0.versionID = a.version!.id
    })
  _ = try await catalog.enableDistribution(.with { $0.serviceID = a.service!.id })
  _ = try await catalog.listOnMarketplace(
    .with {
      $0.serviceID = a.service!.id
      $0.plans = [
        .with {
          $0.planID = "monthly"; $0.billingPeriod = .month; $0.unitPrice = usd(3_000)
        }
      ]
    })
  return a.service!.id
}
_ = try await client(.entitlement, .isv, "isv-bench") {
  try await Nest_Entitlement_V1_EntitlementService.Client(wrapping: $0).grantDistribution(
    .with {
      $0.baseServiceID = product
      $0.distributorID = "dist-bench"
      $0.terms = .with { $0.wholesalePrice = usd(1_000) }
    })
}
let bProduct = try await client(.catalog, .distributor, "dist-bench") { raw in
  let catalog = Nest_Catalog_V1_CatalogService.Client(wrapping: raw)
  let b = try await catalog.createDerivedService(
    .with {
      $0.baseServiceID = product; $0.name = "B"; $0.type = .fullyManaged
    })
  _ = try await catalog.publishService(
    .with {
      $0.serviceID = b.service!.id; $0.versionID = b.version!.id
    })
  return try await catalog.listOnMarketplace(
    .with {
      $0.serviceID = b.service!.id
      $0.plans = [
        .with {
          $0.planID = "monthly"; $0.billingPeriod = .month; $0.unitPrice = usd(2_000)
        }
      ]
    }
  ).product!.id
}

// MARK: Single-call RPC rate: GetProduct on catalog, one call at a time, one connection

let callCount = option("calls", 3000)
let rpcRate = try await client(.catalog, .customer, "c-rate") { raw in
  let catalog = Nest_Catalog_V1_CatalogService.Client(wrapping: raw)
  _ = try await catalog.getProduct(.with { $0.key = .productID(bProduct) })
  let start = ContinuousClock.now
  for _ in 0..<callCount { _ = try await catalog.getProduct(.with { $0.key = .productID(bProduct) }) }
  return Double(callCount) / (ContinuousClock.now - start).seconds
}
let commits = try commitRate(option("commits", 2000))

// MARK: The load

let before = Dictionary(uniqueKeysWithValues: processes.map { ($0.key, usage($0.value.processIdentifier)) })
let loadStart = ContinuousClock.now
let paidAt: [(String, Int64)] = try await withThrowingTaskGroup(of: [(String, Int64)].self) { group in
  for customer in 0..<customers {
    group.addTask {
      try await client(.order, .customer, "cust-\(customer)") { raw in
        let orders = Nest_Order_V1_MarketplaceOrderService.Client(wrapping: raw)
        var paid: [(String, Int64)] = []
        for index in stride(from: customer, to: orderCount, by: customers) {
          let order = try await orders.createOrder(
            .with {
              $0.productID = bProduct; $0.planID = "monthly"; $0.quantity = 1; $0.periods = 1;
              $0.clientToken = "c\(index)"
            }
          ).order!
          let sent = now()
          _ = try await orders.payOrder(
            .with {
              $0.orderID = order.id; $0.paymentReference = "p\(index)"; $0.clientToken = "p\(index)"
            })
          paid.append((order.id, sent))
        }
        return paid
      }
    }
  }
  var all: [(String, Int64)] = []
  for try await paid in group { all += paid }
  return all
}
let paidSeconds = (ContinuousClock.now - loadStart).seconds

// Settled: every delivery of every order acknowledged. Read once, when nothing is pending.
var delivered: [String: Int64] = [:]
try await client(.order, .operator, "op-bench") { raw in
  let orders = Nest_Order_V1_MarketplaceOrderService.Client(wrapping: raw)
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
let after = Dictionary(uniqueKeysWithValues: processes.map { ($0.key, usage($0.value.processIdentifier)) })

var histogram = Histogram<UInt64>(highestTrackableValue: 600_000, numberOfSignificantValueDigits: .three)
for (order, sent) in paidAt { histogram.record(UInt64(max(0, (delivered[order] ?? sent) - sent))) }

// Per order, by construction (see docs/benchmarks.md): RPCs between services and commits.
// RPCs: the customer's 2; CreateOrder asks 4 (GetProduct, GetService, ResolveScenario,
// CheckDistribution); PayOrder 2 (CheckDistribution, A's GetProduct); the deliveries 3
// (CreateServiceInstance, RecordSale twice) and entitlement's GetService for the instance.
let rpcsPerOrder = 2 + 4 + 2 + 4
// Commits: order 2 (create, pay) and its acknowledgements, one per dispatcher round;
// entitlement 1 (the instance) and its deployment, two per batch; settlement 2 (the two
// sales). Before rounds and batches: 5 + 3 + 2 = 10.
let commitsPerOrder = 5

print("nest-bench orders: \(orderCount) scenario-3 orders, \(customers) concurrent customers")
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
print("  per service: CPU s (CPU ms per order), RSS MiB now / peak")
for service in NestServiceName.allCases {
  let cpu = after[service]!.cpu - before[service]!.cpu
  print(
    String(
      format: "    %-12@ %6.2f s (%5.2f ms)  %6.1f / %6.1f", service.rawValue as NSString, cpu,
      cpu * 1000 / Double(orderCount),
      after[service]!.rssMiB, after[service]!.peakMiB))
}
