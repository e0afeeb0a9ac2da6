// nestctl through its real binary: the demo against a platform it spawns, a table, JSON that
// parses, and clear errors with the right exit codes.
import Foundation
import NestProtoTesting
import NestServiceKit
import NestTestKit
import Testing

/// Runs the built nestctl with `arguments` and `environment` added to this process's.
func nestctl(_ arguments: [String], environment: [String: String] = [:]) throws -> ProcessResult {
  try run([Repository.productsDirectory.appendingPathComponent("nestctl").path] + arguments, environment: environment)
}

@Suite("nestctl", .serialized, .timeLimit(.minutes(3)))
struct NestctlTests {
  @Test("demo --spawn walks all four scenarios and a direct sale with every figure agreeing")
  func demo() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nestctl-demo-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    // Free ports, bound by nestctl before the services start (so no other test can take them).
    let result = try nestctl(
      ["demo", "--spawn", "--base-port", "0", "--data-dir", directory.path],
      // The caller's environment does not reach the services nestctl starts: a secret here
      // that differs from the data directory's changes nothing.
      environment: ["NEST_AUTH_SECRET": String(repeating: "x", count: 40), "NEST_COMMISSION_BPS": "not-a-number"])
    #expect(result.status == 0, "\(result.stdoutText)\n\(result.stderr)")
    for heading in ["== scenario 1", "== scenario 2", "== scenario 3", "== scenario 4", "== direct sale"] {
      #expect(result.stdoutText.contains(heading))
    }
    #expect(result.stdoutText.contains("linked order"))
    for step in ["  renewal ord_", "  upgrade ord_", "  trial ord_"] {
      #expect(result.stdoutText.components(separatedBy: step).count - 1 == 5, "\(step)")
    }
    #expect(result.stdoutText.contains("== Reconcile: ok"))
    #expect(result.stdoutText.hasSuffix("all figures agree\n"))
    #expect(!result.stdoutText.contains("EXPECTED"))
    // Scenario 3's ISV heard of it all through its webhook, every signature checked, and
    // deployed the instances through its fulfilment endpoint (the instance, the trial's).
    let received = try #require(
      result.stdoutText.firstMatch(
        of: /the ISV's endpoint received (\d+) of its (\d+) events and (\d+) fulfilment calls/))
    #expect(received.1 == received.2 && (Int(received.1) ?? 0) >= 10, "\(received.0)")
    #expect((Int(received.3) ?? 0) >= 3, "\(received.0)")
    #expect(result.stdoutText.contains("(from the provider: admin_user=admin)"))
    // A security release of A followed down to the scenario-3 customer's instance.
    #expect(result.stdoutText.contains("(a security update)"))
    #expect(result.stdoutText.contains("ISV upgrades it through its fulfilment endpoint: UPGRADED"))
    #expect(result.stdoutText.contains("the trial's instance follows by itself (auto-upgrade)"))
    #expect(result.stdoutText.contains("was told: service.base_updated"))
    #expect(!result.stdoutText.contains("    refused "))
  }

  @Test("events list, webhooks create, listen (signatures checked) and deliveries, as a partner uses them")
  func partner() async throws {
    let platform = try await NestTestPlatform.start(.processes())
    let environment = [
      "NEST_EVENTS_ADDRESS": "\(platform.addresses[.events]!)",
      "NEST_TOKEN": try await platform.token(.isv, "isv-cli"),
    ]
    // A port for the receiver, held (connections refused) until the receiver listens there:
    // the webhook names it first, and its first attempts fail and are retried.
    let reserved = try ListeningSocket(host: "127.0.0.1", port: 0, listening: false)
    let port = reserved.port
    let created = try nestctl(
      ["webhooks", "create", "http://127.0.0.1:\(port)/", "--type", "service.published"], environment: environment)
    #expect(created.status == 0, "\(created.stderr)")
    let lines = created.stdoutText.split(separator: "\n")
    let webhook = try #require(lines.first?.split(separator: "\t").first.map(String.init))
    let secret = try #require(lines.first { $0.hasPrefix("secret: ") }?.dropFirst("secret: ".count))
    reserved.close()
    let listen = Task.detached {
      try nestctl(["webhooks", "listen", "--port", "\(port)", "--secret", String(secret), "--count", "1"])
    }
    _ = try await platform.marketplace.publish(.isv, "isv-cli", type: .fullyManaged, price: 4_900)
    let heard = try await listen.value
    #expect(heard.status == 0, "\(heard.stderr)")
    #expect(heard.stdoutText.contains("service.published") && heard.stdoutText.contains("signature ok"))
    let listed = try nestctl(["events", "list", "--type", "service.published"], environment: environment)
    #expect(listed.status == 0 && listed.stdoutText.contains("service.published"), "\(listed.stderr)")
    let deliveries = try nestctl(["webhooks", "deliveries", webhook], environment: environment)
    #expect(deliveries.stdoutText.contains("DELIVERED"), "\(deliveries.stdoutText)\(deliveries.stderr)")
    // Another party's token: the webhook does not exist for it.
    let stranger = try nestctl(
      ["webhooks", "deliveries", webhook],
      environment: environment.merging(["NEST_TOKEN": try await platform.token(.isv, "isv-other")]) { $1 })
    #expect(stranger.status == 1 && stranger.stderr.contains("NOT_FOUND"), "\(stranger.stderr)")
    for (command, shows) in [("pause", "\tPAUSED\t"), ("resume", "\tACTIVE\t"), ("delete", "deleted \(webhook)")] {
      let answer = try nestctl(["webhooks", command, webhook], environment: environment)
      #expect(
        answer.status == 0 && answer.stdoutText.contains(shows), "\(command): \(answer.stdoutText)\(answer.stderr)")
    }
    let left = try nestctl(["webhooks", "list"], environment: environment)
    #expect(left.status == 0 && !left.stdoutText.contains(webhook), "\(left.stdoutText)")
    await platform.stop()
  }

  @Test("demo: a renewal, a prorated upgrade and a trial in each scenario; --year: a subscription through a year")
  func subscriptions() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nestctl-year-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let result = try nestctl(["demo", "--year", "--base-port", "0", "--data-dir", directory.path])
    #expect(result.status == 0, "\(result.stdoutText)\n\(result.stderr)")
    let out = result.stdoutText
    #expect(out.components(separatedBy: ": auto-renewed").count - 1 == 10)
    for step in ["upgrade to pro", "downgrade to monthly", "RENEW_FAILED", "EXPIRED, EXPIRED", "RELEASED, ENDED"] {
      #expect(out.contains(step), "\(step)")
    }
    #expect(out.contains("checked against the price list (12 sales)"))
    #expect(!out.contains("EXPECTED"))
    #expect(out.hasSuffix("all figures agree\n"))
  }

  @Test("a table, JSON that parses, and errors with the status, the fields and exit codes 1 and 64")
  func calls() async throws {
    let cluster = try ServiceCluster()
    defer { cluster.stopAll() }
    try await cluster.start("catalog")
    let environment = [
      "NEST_CATALOG_ADDRESS": "127.0.0.1:\(cluster.ports["catalog"]!)", "NEST_AUTH_SECRET": cluster.secret,
      "NEST_PROTO_PATH": Repository.path("proto").path,
    ]
    let token = try nestctl(["token", "issue", "--role", "isv", "--subject", "isv-cli"], environment: environment)
    #expect(token.status == 0)
    var withToken = environment
    withToken["NEST_TOKEN"] = token.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)

    let created = try nestctl(
      [
        "catalog", "create-service", "name=Report \"Q3\"", "type=SERVICE_TYPE_PRIVATE",
        "deployment_package.artifact_ref=oci://registry.example/r:1",
        "deployment_package.checksum_sha256=\(String(repeating: "cd", count: 32))",
      ], environment: withToken)
    #expect(created.status == 0, "\(created.stderr)")
    #expect(created.stdoutText.contains("name: Report \"Q3\""))

    let table = try nestctl(["catalog", "list-services"], environment: withToken)
    #expect(table.status == 0)
    let lines = table.stdoutText.split(separator: "\n")
    #expect(lines.first?.hasPrefix("ID") == true)
    #expect(lines.count == 2)
    #expect(lines.last?.contains("Report \"Q3\"") == true)

    let json = try nestctl(["catalog", "list-services", "--json"], environment: withToken)
    let parsed = try JSONSerialization.jsonObject(with: json.stdout) as? [String: Any]
    let services = parsed?["services"] as? [[String: Any]]
    #expect(services?.count == 1)
    #expect(services?.first?["type"] as? String == "SERVICE_TYPE_PRIVATE")
    #expect(services?.first?["ownerId"] as? String == "isv-cli")

    // Refused by the service: the code name, the message and each field; exit 1.
    let refused = try nestctl(
      ["catalog", "create-service", "name=", "type=SERVICE_TYPE_PRIVATE"], environment: withToken)
    #expect(refused.status == 1)
    #expect(refused.stderr.hasPrefix("error: INVALID_ARGUMENT:"))
    #expect(refused.stderr.contains("  name: must not be empty"))
    #expect(refused.stderr.contains("  deployment_package: is required"))
    // Without a token: UNAUTHENTICATED.
    let anonymous = try nestctl(["catalog", "list-services"], environment: environment)
    #expect(anonymous.status == 1)
    #expect(anonymous.stderr.hasPrefix("error: UNAUTHENTICATED"))
    // Bad arguments: exit 64 with what is wrong.
    let unknown = try nestctl(["catalog", "no-such-method"], environment: withToken)
    #expect(unknown.status == 64)
    #expect(unknown.stderr.contains("catalog has no method \"no-such-method\""))
    let badRole = try nestctl(["token", "issue", "--role", "admin", "--subject", "x"], environment: environment)
    #expect(badRole.status == 64)
    #expect(badRole.stderr.contains("--role must be"))

    // call: text format in, text format out.
    let call = try nestctl(
      [
        "call", "127.0.0.1:\(cluster.ports["catalog"]!)", "/nest.catalog.v1.CatalogService/ListServices",
        "--request", "page { page_size: 5 }",
      ], environment: withToken)
    #expect(call.status == 0, "\(call.stderr)")
    #expect(call.stdoutText.contains("name: \"Report \\\"Q3\\\"\""))
  }

  @Test(
    "up starts the five services, SIGTERM stops them cleanly, the data is there after the next up, and nestctl killed takes its services with it"
  )
  func up() async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nestctl-up-\(UUID())")
    defer { try? FileManager.default.removeItem(at: directory) }
    let arguments = ["up", "--data-dir", directory.path, "--base-port", "0"]
    var platform = try ChildProcess("nestctl", arguments: arguments)
    // The table names each service's address: free ports nestctl bound for them.
    let catalogLine = try #require(await platform.line(startingWith: "catalog-service"), "\(platform.lines)")
    #expect(await platform.line(startingWith: "settlement-service") != nil, "\(platform.lines)")
    let catalogAddress = String(catalogLine.split(separator: " ", omittingEmptySubsequences: true)[1])
    let environment = ["NEST_CATALOG_ADDRESS": catalogAddress, "NEST_PROTO_PATH": Repository.path("proto").path]
    for name in ["catalog", "entitlement", "order", "settlement"] {
      #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("\(name).sqlite").path))
    }
    let token = try nestctl(
      ["token", "issue", "--role", "isv", "--subject", "isv-up", "--data-dir", directory.path], environment: environment
    )
    var withToken = environment
    withToken["NEST_TOKEN"] = token.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
    let created = try nestctl(
      [
        "catalog", "create-service", "name=Kept", "type=SERVICE_TYPE_PRIVATE",
        "deployment_package.artifact_ref=oci://kept:1",
        "deployment_package.checksum_sha256=\(String(repeating: "ab", count: 32))",
      ], environment: withToken)
    #expect(created.status == 0, "\(created.stderr)")
    #expect(platform.stop() == 0)
    #expect(platform.lines.last == "stopped")

    platform = try ChildProcess("nestctl", arguments: arguments)
    let again = try #require(await platform.line(startingWith: "catalog-service"), "\(platform.lines)")
    #expect(await platform.line(startingWith: "settlement-service") != nil)
    withToken["NEST_CATALOG_ADDRESS"] = String(again.split(separator: " ", omittingEmptySubsequences: true)[1])
    let listed = try nestctl(["catalog", "list-services", "--json"], environment: withToken)
    #expect(listed.stdoutText.contains("\"Kept\""), "\(listed.stdoutText) \(listed.stderr)")

    // nestctl killed outright (no SIGTERM to pass on): its services see their standard input
    // end and stop by themselves, instead of serving on with no one to stop them.
    let services = Self.children(of: platform.process.processIdentifier)
    #expect(services.count == 5, "\(services)")
    defer { for pid in services where Self.running(pid) { kill(pid, SIGKILL) } }  // if they outlived it
    kill(platform.process.processIdentifier, SIGKILL)
    platform.process.waitUntilExit()
    let deadline = ContinuousClock.now + .seconds(30)
    while ContinuousClock.now < deadline, services.contains(where: Self.running) {
      try await Task.sleep(for: .milliseconds(50))
    }
    #expect(!services.contains(where: Self.running), "still running: \(services.filter(Self.running))")
  }

  /// The processes whose parent is `pid`.
  static func children(of pid: Int32) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int32.init).filter { child in
      guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8) else { return false }
      // pid (comm) state ppid ...: the fields after the command's closing parenthesis.
      let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
      return fields.count > 1 && Int32(fields[1]) == pid
    }
  }

  /// Whether `pid` is still a process that runs (gone, or exited and not yet reaped, is not).
  static func running(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
    let state = stat.split(separator: ")").last?.split(separator: " ").first
    return state != "Z" && state != "X"
  }
}
