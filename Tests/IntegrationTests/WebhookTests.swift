// Webhooks as partners receive them: Tests/Python/webhook_receiver.py (Python's standard
// library HTTP server, its own HMAC check of each Standard Webhooks signature, protobuf's own
// proto3 JSON parser), with the five services as processes. Nothing is lost or reordered per
// subject while the receiver fails, is down, answers too slowly, and while the events service
// and marketplace-order are SIGKILLed; hostile receivers are bounded and leave the others be.
import Foundation
import NestDomain
import NestProtoTesting
import NestTestKit
import Testing

/// One delivery as the receiver accepted it.
struct Received: Decodable, Sendable {
  var path: String
  var webhook_id: String
  var type: String
  var subject: String
  var sequence: Int64
  var body: String
}

/// A receiver process and its files.
final class Receiver: Sendable {
  let process: Process
  let port: Int
  let out: URL
  let secrets: URL

  /// Starts webhook_receiver.py in `mode` (on `port`, or any free one).
  init(_ directory: URL, _ name: String, mode: String = "ok", port: Int = 0, extra: [String] = []) async throws {
    self.out = directory.appendingPathComponent("\(name).jsonl")
    self.secrets = directory.appendingPathComponent("\(name)-secrets.json")
    if !FileManager.default.fileExists(atPath: self.secrets.path) {
      try Data("{}".utf8).write(to: self.secrets)
    }
    let portFile = directory.appendingPathComponent("\(name)-\(UUID()).port")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments =
      [
        "python3", Repository.path("Tests/Python/webhook_receiver.py").path, "--port", "\(port)", "--port-file",
        portFile.path, "--secrets", self.secrets.path, "--out", self.out.path, "--mode", mode,
      ] + extra
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    self.process = process
    let started = try await eventually(timeout: .seconds(30)) {
      FileManager.default.fileExists(atPath: portFile.path) || !process.isRunning
    }
    guard started, let text = try? String(contentsOf: portFile, encoding: .utf8), let port = Int(text) else {
      NestProtoTesting.stop(process)
      throw ConfigurationError("webhook_receiver.py did not start")
    }
    self.port = port
  }

  func url(_ path: String) -> String { "http://127.0.0.1:\(self.port)\(path)" }

  /// What it accepted so far.
  func received() -> [Received] {
    guard let text = try? String(contentsOf: self.out, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(Received.self, from: Data($0.utf8)) }
  }

  func stop() { NestProtoTesting.stop(self.process) }

  /// Adds a webhook's secret at `path` (the file is read at each request).
  static func register(_ secret: String, at path: String, in file: URL) throws {
    var secrets = (try? JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: String]) ?? [:]
    secrets[path] = secret
    try JSONSerialization.data(withJSONObject: secrets).write(to: file, options: .atomic)
  }
}

@Suite("Webhooks to an independent receiver", .serialized, .timeLimit(.minutes(5)))
struct WebhookTests {
  static let settings: [NestServiceName: [String: String]] = [
    .events: [
      "webhook.backoff.initial.ms": "50", "webhook.backoff.max.ms": "400", "webhook.timeout.ms": "1000",
    ]
  ]

  @Test(
    "a scenario-3 sale, renewal and refund reach each party's receiver: every event, once per id, in order per subject, through failures, an outage, slowness and SIGKILLs"
  )
  func scenario3() async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("webhooks-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    // The first three attempts fail; then one answers past the timeout.
    var receiver = try await Receiver(directory, "partners", mode: "fail-first", extra: ["--count", "3"])
    let platform = try await NestTestPlatform.start(.processes(), settings: Self.settings)
    let marketplace = platform.marketplace
    let parties = ScenarioParties(.scenario3, run: "hooks")
    let readers: [(Nest_Common_V1_Role, String)] = [
      (.isv, parties.isv), (.distributor, parties.distributor), (.customer, parties.customer),
    ]
    for (role, account) in readers {
      let created = try await platform.events(as: role, account) {
        try await $0.createWebhook(.with { $0.url = receiver.url("/\(account)") })
      }
      try Receiver.register(created.secret, at: "/\(account)", in: receiver.secrets)
    }
    let setup = try await marketplace.setUp(.scenario3, parties: parties)
    let order = try await marketplace.buy(parties.customer, product: setup.productID)
    // The events service killed while the sale's events are on their way; back after.
    await platform.stop(.events, kill: true)
    _ = try await marketplace.waitForOrder(order.id)
    try await platform.start(.events)
    let instance = try await marketplace.instance(of: order)
    // The receiver down for a while: restarted on its port, answering slowly at first.
    let port = receiver.port
    receiver.stop()
    let renewal = try await marketplace.renew(parties.customer, instance: instance.id)
    await platform.stop(.order, kill: true)
    try await platform.start(.order)
    _ = try await marketplace.waitForOrder(renewal.id)
    receiver = try await Receiver(
      directory, "partners", mode: "slow-first", port: port, extra: ["--count", "1", "--delay", "2"])
    defer { receiver.stop() }
    _ = try await platform.orders(as: .distributor, parties.distributor) {
      try await $0.refundOrder(
        .with {
          $0.orderID = order.id
          $0.reason = "changed their mind"
        })
    }
    _ = try await marketplace.waitForOrder(order.id) {
      $0.order?.status == .refunded && $0.order?.delivery?.pending == 0
    }

    // Each party's receiver gets exactly the events of its feed, once per id.
    var feeds: [String: [Nest_Events_V1_Event]] = [:]
    for (role, account) in readers { feeds[account] = try await platform.feed(as: role, account) }
    let everything = try await eventually(timeout: .seconds(90)) {
      for (role, account) in readers { feeds[account] = try await platform.feed(as: role, account) }
      let received = receiver.received()
      return readers.allSatisfy { _, account in
        Set(received.filter { $0.path == "/\(account)" }.map(\.webhook_id)) == Set(feeds[account]!.map(\.id))
      } && feeds[parties.customer]!.contains { $0.type == "order.refunded" }
        && feeds[parties.customer]!.contains { $0.type == "instance.released" }
    }
    let received = receiver.received()
    #expect(everything, "received \(received.count) deliveries")
    for (_, account) in readers {
      let mine = received.filter { $0.path == "/\(account)" }
      // In order per subject: the first arrival of each event comes after its predecessor's.
      var seen: Set<String> = []
      var last: [String: Int64] = [:]
      for delivery in mine where seen.insert(delivery.webhook_id).inserted {
        #expect(
          delivery.sequence > (last[delivery.subject] ?? 0),
          "\(account): \(delivery.subject) #\(delivery.sequence) after #\(last[delivery.subject] ?? 0)")
        last[delivery.subject] = delivery.sequence
      }
      // A duplicate is the same event again: same id, same body.
      let bodies = Dictionary(grouping: mine, by: \.webhook_id)
      #expect(bodies.values.allSatisfy { Set($0.map(\.body)).count == 1 })
    }
    let types = Set(received.filter { $0.path == "/\(parties.customer)" }.map(\.type))
    #expect(
      types.isSuperset(of: ["order.paid", "order.fulfilled", "order.renewed", "order.refunded", "instance.deployed"]))
    for delivery in received where delivery.path == "/\(parties.customer)" {
      #expect(!delivery.body.contains("wholesale") && !delivery.body.contains("linkedOrderIds"), "\(delivery.body)")
    }
    #expect(received.contains { $0.path == "/\(parties.isv)" && $0.type == "authorization.applied" })
    print(
      "webhooks: \(received.count) deliveries accepted (\(Set(received.map(\.webhook_id)).count) distinct events) for "
        + readers.map { "\($0.1): \(feeds[$0.1]!.count)" }.joined(separator: ", "))
    await platform.stop()
  }

  @Test(
    "hostile receivers (a redirect, an endless body, one that never answers, one that always fails) are bounded; another webhook of the party gets everything, and the failing one is disabled with an event"
  )
  func hostile() async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("webhooks-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let good = try await Receiver(directory, "good")
    let elsewhere = try await Receiver(directory, "elsewhere")
    let redirect = try await Receiver(
      directory, "redirect", mode: "redirect", extra: ["--location", elsewhere.url("/isv")])
    let endless = try await Receiver(directory, "endless", mode: "endless")
    let hang = try await Receiver(directory, "hang", mode: "hang")
    let failing = try await Receiver(directory, "failing", mode: "fail")
    defer { for receiver in [good, elsewhere, redirect, endless, hang, failing] { receiver.stop() } }
    var settings = Self.settings
    settings[.events]!["webhook.retry.window.ms"] = "3000"
    let platform = try await NestTestPlatform.start(.processes(), settings: settings)
    let isv = "isv-hostile"
    var webhooks: [String: String] = [:]
    for receiver in [good, redirect, endless, hang, failing] {
      let created = try await platform.events(as: .isv, isv) {
        try await $0.createWebhook(.with { $0.url = receiver.url("/isv") })
      }
      try Receiver.register(created.secret, at: "/isv", in: receiver.secrets)
      webhooks[receiver.out.lastPathComponent] = created.webhook?.id ?? ""
    }
    let marketplace = platform.marketplace
    let started = ContinuousClock.now
    let setup = try await marketplace.setUp(
      .direct, parties: ScenarioParties(isv: isv, distributor: "dist-hostile", customer: "c-hostile"))
    let order = try await marketplace.buy("c-hostile", product: setup.productID)
    _ = try await marketplace.waitForOrder(order.id)
    _ = try await eventually { try await platform.feed(as: .isv, isv).contains { $0.type == "instance.deployed" } }
    let feedIDs = Set(try await platform.feed(as: .isv, isv).map(\.id))
    #expect(!feedIDs.isEmpty)
    // The good receiver gets every event, promptly, whatever the others do.
    let delivered = try await eventually(timeout: .seconds(30)) {
      feedIDs.isSubset(of: Set(good.received().map(\.webhook_id)))
    }
    #expect(delivered, "the good webhook is held up by the others")
    print("hostile receivers: the good one had all \(feedIDs.count) events after \(ContinuousClock.now - started)")
    #expect(elsewhere.received().isEmpty, "a redirect was followed")
    // What each hostile one's deliveries say.
    func lastErrors(_ name: String) async throws -> [String] {
      try await platform.events(as: .isv, isv) {
        try await $0.listWebhookDeliveries(.with { $0.webhookID = webhooks[name]! }).deliveries.map(\.lastError)
      }
    }
    #expect(
      try await eventually(timeout: .seconds(30)) {
        try await lastErrors("redirect.jsonl").contains {
          $0.contains("HTTP 302") && $0.contains("redirects are not followed")
        }
      })
    #expect(
      try await eventually(timeout: .seconds(30)) {
        try await lastErrors("hang.jsonl").contains { $0.contains("timed out") }
      })
    // An endless body is read no further than its first bytes: a 200 is a delivery.
    #expect(
      try await eventually(timeout: .seconds(30)) {
        let deliveries = try await platform.events(as: .isv, isv) {
          try await $0.listWebhookDeliveries(.with { $0.webhookID = webhooks["endless.jsonl"]! }).deliveries
        }
        return deliveries.count >= feedIDs.count && deliveries.allSatisfy { $0.status == .delivered }
      })
    // The always-failing one is disabled after the 3 s window, and its owner is told.
    let disabled = try await eventually(timeout: .seconds(60)) {
      let hooks = try await platform.events(as: .isv, isv) { try await $0.listWebhooks(.init()).webhooks }
      return hooks.first { $0.id == webhooks["failing.jsonl"] }?.status == .disabled
    }
    #expect(disabled)
    let notice = try await eventually(timeout: .seconds(30)) {
      good.received().contains { $0.type == "webhook.disabled" && $0.body.contains(webhooks["failing.jsonl"]!) }
    }
    #expect(notice, "the owner's other webhook got no webhook.disabled")
    await platform.stop()
  }
}
