// nest-bench transports: the project's own service over both of its listeners. catalog runs
// as its executable does (one process, wire protocol v1 and gRPC over HTTP/2 beside it, the
// same handlers, interceptors, auth and codec) and is called with GetProduct, a customer's
// token on every call, over each protocol at several concurrencies. CPU per call is the
// client's and catalog's, summed.
//
//   Benchmarks/.build/release/nest-bench transports [--seconds 3] [--connections 1]
import Foundation
import Histogram
import NestProto
import NestScenarios
import NestServiceKit
import NestTestKit

func transportsBench(executables: URL, seconds: Int, concurrencies: [Int]) async throws {
  let platform = try await NestTestPlatform.start(.processes(executables: executables))
  let local = platform.processes!
  let catalogPID = local.pid(.catalog)!
  let setup = try await platform.marketplace.setUp(
    .scenario3, parties: ScenarioParties(isv: "isv-tb", distributor: "dist-tb", customer: "c-tb"))
  let token = try await platform.token(.customer, "c-tb")
  let request = Nest_Catalog_V1_GetProductRequest.with { $0.key = .productID(setup.productID) }
  let protocols: [(String, ServiceAddress)] = [
    ("wire v1 (TCP)", local.addresses[.catalog]!), ("gRPC HTTP/2", local.grpcAddresses[.catalog]!),
  ]

  print(
    "nest-bench transports: catalog GetProduct as a customer, \(seconds) s per row after a 0.5 s warm-up, 1 connection, \(ProcessInfo.processInfo.activeProcessorCount) cores"
  )
  print("| protocol | conc | calls/s | p50 us | p99 us | CPU us/call (client + catalog) |")
  print("|---|---:|---:|---:|---:|---:|")
  var rates: [String: Double] = [:]
  var cpus: [String: Double] = [:]
  for (name, address) in protocols {
    for concurrency in concurrencies {
      let measured = try await measureCalls(
        address: address, token: token, request: request, concurrency: concurrency, seconds: seconds,
        serverPID: catalogPID)
      let (rate, cpuPerCall, histogram) = (measured.rate, measured.cpuPerCall, measured.latencies)
      rates["\(name)/\(concurrency)"] = rate
      cpus["\(name)/\(concurrency)"] = cpuPerCall
      print(
        String(
          format: "| %@ | %d | %.0f | %.0f | %.0f | %.1f |", name as NSString, concurrency, rate,
          Double(histogram.valueAtPercentile(50)) / 1000, Double(histogram.valueAtPercentile(99)) / 1000, cpuPerCall))
      fflush(nil)
    }
  }
  print("\nwire v1 against gRPC HTTP/2, same handlers:")
  for concurrency in concurrencies {
    guard let nest = rates["wire v1 (TCP)/\(concurrency)"], let http2 = rates["gRPC HTTP/2/\(concurrency)"],
      let nestCPU = cpus["wire v1 (TCP)/\(concurrency)"], let http2CPU = cpus["gRPC HTTP/2/\(concurrency)"]
    else { continue }
    print(
      String(
        format: "- c=%d: calls/s %.2fx, CPU per call %.2fx of HTTP/2's", concurrency, nest / http2, nestCPU / http2CPU))
  }
  await platform.stop()
}

/// GetProduct calls to catalog at `address` from `concurrency` tasks over one connection for
/// `seconds` (after a 0.5 s warm-up): calls/s, CPU per call in us (this process's and the
/// server's, summed) and the latencies in ns.
func measureCalls(
  address: ServiceAddress, token: String, request: Nest_Catalog_V1_GetProductRequest, concurrency: Int, seconds: Int,
  serverPID: Int32
) async throws -> (rate: Double, cpuPerCall: Double, latencies: Histogram<UInt64>) {
  let connections = SharedConnections()
  try connections.add(.catalog, address: address, peerName: "nest-bench")
  func drive(for duration: Duration) async throws -> [UInt64] {
    let deadline = ContinuousClock.now + duration
    return try await withThrowingTaskGroup(of: [UInt64].self) { group in
      for _ in 0..<concurrency {
        group.addTask {
          var latencies: [UInt64] = []
          while ContinuousClock.now < deadline {
            let start = ContinuousClock.now
            _ = try await connections.withClient(.catalog, token: token) {
              try await $0.catalog.getProduct(request)
            }
            let elapsed = ContinuousClock.now - start
            latencies.append(UInt64(elapsed.seconds * 1e9))
          }
          return latencies
        }
      }
      var all: [UInt64] = []
      for try await latencies in group { all += latencies }
      return all
    }
  }
  _ = try await drive(for: .milliseconds(500))
  let cpuBefore = selfCPUSeconds() + usage(serverPID).cpu
  let start = ContinuousClock.now
  let latencies = try await drive(for: .seconds(seconds))
  let elapsed = (ContinuousClock.now - start).seconds
  let cpu = selfCPUSeconds() + usage(serverPID).cpu - cpuBefore
  await connections.close()
  var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
  for latency in latencies { histogram.record(max(latency, 1)) }
  return (Double(latencies.count) / elapsed, cpu * 1e6 / Double(max(latencies.count, 1)), histogram)
}

/// user+system CPU seconds of this process.
func selfCPUSeconds() -> Double { usage(getpid()).cpu }
