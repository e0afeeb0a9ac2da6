// Traces as a collector receives them: Tests/Python/otlp_receiver.py (grpcio with
// opentelemetry-proto) takes the OTLP exports of the five executables, started with the
// standard OTEL_* variables, while one scenario-3 order is paid. One trace runs from the
// PayOrder call through marketplace-order, entitlement and settlement; the outbox's
// deliveries, made by the dispatcher after PayOrder has answered, are children of its span;
// marketplace-order's JSON log lines carry the trace id.
import Foundation
import Logging
import NestProtoTesting
import NestScenarios
import NestTestKit
import Testing

/// A span as the receiver wrote it.
struct ReceivedSpan: Decodable, Hashable {
  var service: String
  var name: String
  var kind: String
  var trace_id: String
  var span_id: String
  var parent_span_id: String
  var start_unix_nano: UInt64
  var status: String
}

@Suite("Traces over OTLP", .serialized, .timeLimit(.minutes(3)))
struct TracingTests {
  @Test("one paid scenario-3 order: one trace across three services, deliveries children of PayOrder")
  func scenario3Trace() async throws {
    try #require(
      FileManager.default.isExecutableFile(atPath: grpcPython.path), "no \(grpcPython.path): run scripts/bootstrap")
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("otlp-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let portFile = directory.appendingPathComponent("port")
    let spansFile = directory.appendingPathComponent("spans.jsonl")
    let receiver = Process()
    receiver.executableURL = grpcPython
    receiver.arguments = [
      Repository.path("Tests/Python/otlp_receiver.py").path, "--port-file", portFile.path, "--spans", spansFile.path,
    ]
    try receiver.run()
    defer {
      stop(receiver)
    }
    #expect(
      try await eventually(timeout: .seconds(30)) {
        FileManager.default.fileExists(atPath: portFile.path) || !receiver.isRunning
      })
    let port = try String(contentsOf: portFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)

    let platform = try await NestTestPlatform.start(
      .processes(environment: [
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(port)", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        // Export every 100 ms rather than every 5 s.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
      ]),
      settings: [.order: ["log.format": "json"]], logLevel: .info)
    let marketplace = platform.marketplace
    let setup = try await marketplace.setUp(.scenario3, parties: ScenarioParties(.scenario3, run: "trace"))
    let order = try await marketplace.buy(setup.parties.customer, product: setup.productID)
    let done = try await marketplace.waitForOrder(order.id)
    #expect(done.order?.status == .fulfilled)
    #expect(done.order?.linkedOrderIds.count == 1)

    // The spans of PayOrder's trace, once the three deliveries' calls have reached their
    // targets and been exported.
    var spans: [ReceivedSpan] = []
    var pay: ReceivedSpan? = nil
    let complete = try await eventually(timeout: .seconds(60)) {
      let all = Self.read(spansFile)
      pay = all.first { $0.name == "nest.order.v1.MarketplaceOrderService/PayOrder" && $0.kind == "SPAN_KIND_SERVER" }
      guard let pay else { return false }
      spans = all.filter { $0.trace_id == pay.trace_id }
      // A span is exported when it ends: a delivery's own span and its client span end after
      // the target's server span, so all of them are waited for.
      let served = spans.filter { $0.kind == "SPAN_KIND_SERVER" }.map(\.name)
      let called = spans.filter { $0.kind == "SPAN_KIND_CLIENT" }.map(\.name)
      return served.contains("nest.entitlement.v1.EntitlementService/CreateServiceInstances")
        && served.contains("nest.settlement.v1.SettlementService/RecordSales")
        && called.contains("nest.settlement.v1.SettlementService/RecordSales")
        && spans.filter { $0.name.hasPrefix("deliver ") }.count == 3
    }
    let tree = Self.render(spans)
    #expect(complete, "the trace as received:\n\(tree)")
    let payOrder = try #require(pay)
    print("The trace of order \(order.id) as the receiver got it:\n\(tree)")

    // One trace id across the three services the order crossed.
    #expect(
      Set(spans.map(\.service)).isSuperset(of: [
        "marketplace-order-service", "entitlement-service", "settlement-service",
      ]),
      "\(Set(spans.map(\.service)))")
    // The dispatcher's deliveries: children of PayOrder's span, one per outbox row.
    let deliveries = spans.filter { $0.name.hasPrefix("deliver ") }
    #expect(
      deliveries.map(\.name).sorted() == ["deliver CREATE_INSTANCE", "deliver RECORD_SALE", "deliver RECORD_SALE"],
      "\(tree)")
    #expect(
      deliveries.allSatisfy { $0.parent_span_id == payOrder.span_id && $0.service == "marketplace-order-service" })
    // The deliveries' calls: a client span under a delivery, the target's server span under
    // that; the two sales (the order's and its linked order's) in one RecordSales call.
    let byID = Dictionary(spans.map { ($0.span_id, $0) }) { first, _ in first }
    let sales = spans.filter { $0.kind == "SPAN_KIND_SERVER" && $0.name.hasSuffix("/RecordSales") }
    #expect(sales.count == 1, "\(tree)")
    for server in sales
      + spans.filter({ $0.kind == "SPAN_KIND_SERVER" && $0.name.hasSuffix("/CreateServiceInstances") })
    {
      let client = try #require(byID[server.parent_span_id], "\(server.name) has no parent in the trace")
      #expect(client.kind == "SPAN_KIND_CLIENT" && client.service == "marketplace-order-service")
      #expect(byID[client.parent_span_id]?.name.hasPrefix("deliver ") == true)
    }
    #expect(
      !spans.contains { $0.name.hasSuffix("/RecordSale") || $0.name.hasSuffix("/CreateServiceInstance") }, "\(tree)")
    // PayOrder's own calls before it answered (the place under the authorization, A's product).
    #expect(
      spans.contains {
        $0.name == "nest.entitlement.v1.EntitlementService/ReserveInstanceSlot" && $0.kind == "SPAN_KIND_SERVER"
      })

    // marketplace-order's JSON log line of the call carries the trace id.
    let log = try String(contentsOf: platform.processes!.log(.order), encoding: .utf8)
    let lines = log.split(separator: "\n").compactMap {
      try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }
    #expect(
      lines.contains {
        $0["message"] as? String == "rpc" && $0["method"] as? String == "nest.order.v1.MarketplaceOrderService/PayOrder"
          && $0["trace_id"] as? String == payOrder.trace_id
      }, "\(log.suffix(2000))")
    await platform.stop()
  }

  static func read(_ file: URL) -> [ReceivedSpan] {
    guard let text = try? String(contentsOf: file, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(ReceivedSpan.self, from: Data($0.utf8)) }
  }

  /// The trace as an indented tree: service, kind and name of each span under its parent.
  static func render(_ spans: [ReceivedSpan]) -> String {
    let ids = Set(spans.map(\.span_id))
    let children = Dictionary(grouping: spans) { ids.contains($0.parent_span_id) ? $0.parent_span_id : "" }
    var lines: [String] = []
    func walk(_ parent: String, depth: Int) {
      for span in (children[parent] ?? []).sorted(by: { $0.start_unix_nano < $1.start_unix_nano }) {
        let kind = span.kind.replacingOccurrences(of: "SPAN_KIND_", with: "").lowercased()
        lines.append(
          String(repeating: "  ", count: depth) + "\(span.name) [\(kind), \(span.service)]"
            + (span.status == "STATUS_CODE_ERROR" ? " ERROR" : ""))
        walk(span.span_id, depth: depth + 1)
      }
    }
    walk("", depth: 0)
    return (spans.first.map { "trace \($0.trace_id)\n" } ?? "") + lines.joined(separator: "\n")
  }
}
