// Each executable's admin port as operators' tools read it: /healthz, /readyz and /metrics,
// scraped by a real Prometheus (Debian's package) that this test starts; its HTTP API then
// says how many times a method was called, and it is the number the test called it.
import Foundation
import FoundationNetworking
import NestProtoTesting
import NestTestKit
import Testing

/// GET `url`: the status code and body.
func httpGet(_ url: String) async throws -> (status: Int, body: String) {
  let (data, response) = try await URLSession.shared.data(from: URL(string: url)!)
  return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}

@Suite("Metrics on the admin port", .serialized, .timeLimit(.minutes(3)))
struct MetricsTests {
  @Test("/healthz and /readyz answer; a real Prometheus scrapes every service and counts the calls made")
  func prometheus() async throws {
    let platform = try await NestTestPlatform.start(.processes())
    let admin = platform.processes!.adminAddresses
    for service in NestServiceName.allCases {
      let base = "http://\(admin[service]!.host):\(admin[service]!.port)"
      #expect(try await httpGet(base + "/healthz").status == 200, "\(service)")
      #expect(try await httpGet(base + "/readyz") == (200, "ready\n"), "\(service)")
      let metrics = try await httpGet(base + "/metrics")
      #expect(metrics.status == 200)
      #expect(metrics.body.contains("nest_rpc_calls_total"), "\(service): \(metrics.body.prefix(300))")
    }
    #expect(try await httpGet("http://\(admin[.order]!.host):\(admin[.order]!.port)/nothing").status == 404)

    // Prometheus, scraping the five admin ports every second.
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("prometheus-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let targets = NestServiceName.allCases.map { "'\(admin[$0]!.host):\(admin[$0]!.port)'" }.joined(separator: ", ")
    let config = directory.appendingPathComponent("prometheus.yml")
    try """
    global:
      scrape_interval: 1s
    scrape_configs:
      - job_name: nest
        static_configs:
          - targets: [\(targets)]
    """.write(to: config, atomically: true, encoding: .utf8)
    // Prometheus binds its own port; a taken one makes it exit, and the next is tried.
    var prometheus: Process? = nil
    var api = ""
    for port in (0..<20).map({ _ in Int.random(in: 20_000...60_000) }) {
      let process = Process()
      process.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
      process.arguments = [
        "--config.file=\(config.path)", "--storage.tsdb.path=\(directory.appendingPathComponent("data").path)",
        "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn",
      ]
      process.standardOutput = FileHandle.nullDevice
      process.standardError = FileHandle.nullDevice
      try process.run()
      api = "http://127.0.0.1:\(port)"
      let up = try await eventually(timeout: .seconds(20)) {
        guard process.isRunning else { return true }
        return (try? await httpGet(api + "/-/ready").status) == 200
      }
      if up && process.isRunning {
        prometheus = process
        break
      }
    }
    let server = try #require(prometheus, "prometheus did not start")
    defer {
      stop(server)
    }

    // The test's calls: ListProducts, which nothing else calls.
    let calls = 7
    for _ in 0..<calls {
      _ = try await platform.catalog(as: .customer, "cust-metrics") { try await $0.listProducts(.init()) }
    }
    let query =
      "sum(nest_rpc_calls_total{method=\"nest.catalog.v1.CatalogService/ListProducts\",code=\"OK\"})"
    var seen = ""
    let counted = try await eventually(timeout: .seconds(60)) {
      var components = URLComponents(string: api + "/api/v1/query")!
      components.queryItems = [URLQueryItem(name: "query", value: query)]
      let answer = try await httpGet(components.url!.absoluteString)
      seen = answer.body
      return answer.body.contains("\"\(calls)\"]")
    }
    #expect(counted, "Prometheus answered \(seen)")
    // Every service is scraped (each on its own first scrape, which may come after catalog's).
    let scraped = try await eventually(timeout: .seconds(60)) {
      var components = URLComponents(string: api + "/api/v1/query")!
      components.queryItems = [URLQueryItem(name: "query", value: "count(up == 1)")]
      let answer = try await httpGet(components.url!.absoluteString)
      seen = answer.body
      return answer.body.contains("\"\(NestServiceName.allCases.count)\"]")
    }
    #expect(scraped, "Prometheus answered \(seen)")
    await platform.stop()
  }
}
