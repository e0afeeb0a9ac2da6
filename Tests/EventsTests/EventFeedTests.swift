// The feed as each party reads it, after a scenario-3 sale, a renewal and a refund run
// through the four services: every event reaches exactly the parties that may read its
// subject through the owning service's own RPCs, a customer's copy carries no wholesale
// figure and no linked order, and each subject's events are numbered 1, 2, 3... in feed order.
import Events
import Foundation
import GRPCCore
import NestDomain
import NestTestKit
import NestTransport
import Testing

@Suite("Event feed", .timeLimit(.minutes(3)))
struct EventFeedTests {
  /// Each party's feed (by account), and for every event of `all` but a catalog service's:
  /// in a party's feed exactly when that party may read its subject through the owning
  /// service. The parties of a scenario: its ISV, distributor and customer.
  static func expectExactReaders(_ platform: NestTestPlatform, _ all: [Event], _ parties: ScenarioParties)
    async throws -> [String: [Event]]
  {
    let readers: [(Nest_Common_V1_Role, String)] = [
      (.isv, parties.isv), (.distributor, parties.distributor), (.customer, parties.customer),
    ]
    var feeds: [String: [Event]] = [:]
    for (role, account) in readers { feeds[account] = try await platform.feed(as: role, account) }
    for event in all where !event.subject.hasPrefix("service/") {
      for (role, account) in readers {
        let readable = await Self.mayRead(platform, role, account, event.subject)
        #expect(
          feeds[account]!.contains { $0.id == event.id } == readable,
          "\(event.type) of \(event.subject): \(role) may read it: \(readable)")
      }
    }
    return feeds
  }

  /// Whether `role` `subject` may read the event's subject through its owning service.
  static func mayRead(
    _ platform: NestTestPlatform, _ role: Nest_Common_V1_Role, _ account: String, _ subject: String
  ) async -> Bool {
    let parts = subject.split(separator: "/", maxSplits: 1).map(String.init)
    do {
      switch parts[0] {
      case "order":
        _ = try await platform.orders(as: role, account) { try await $0.getOrder(.with { $0.orderID = parts[1] }) }
      case "instance":
        _ = try await platform.entitlement(as: role, account) {
          try await $0.getServiceInstance(.with { $0.key = .instanceID(parts[1]) })
        }
      case "authorization":
        _ = try await platform.entitlement(as: role, account) {
          try await $0.getDistributionAuthorization(.with { $0.authorizationID = parts[1] })
        }
      case "statement":
        _ = try await platform.settlement(as: role, account) {
          try await $0.getStatement(.with { $0.statementID = parts[1] })
        }
      // No Get RPC: the party's own list, which shows it exactly what it may read.
      case "obligation":
        return try await platform.settlement(as: role, account) {
          try await $0.listObligations(.with { $0.page = .with { $0.pageSize = 500 } }).obligations
        }.contains { $0.id == parts[1] }
      case "permission_request":
        return try await platform.entitlement(as: role, account) {
          try await $0.listPermissionRequests(.with { $0.page = .with { $0.pageSize = 500 } }).requests
        }.contains { $0.id == parts[1] }
      default:
        Issue.record("no getter for \(subject)")
        return false
      }
      return true
    } catch {
      return false
    }
  }

  @Test("a scenario-3 sale, renewal and refund: each party's feed holds exactly what it may read")
  func visibility() async throws {
    let platform = try await NestTestPlatform.start()
    let marketplace = platform.marketplace
    let parties = ScenarioParties(.scenario3, run: "feed")
    let setup = try await marketplace.setUp(.scenario3, parties: parties)
    let order = try await marketplace.buy(parties.customer, product: setup.productID)
    _ = try await marketplace.waitForOrder(order.id)
    let instance = try await marketplace.instance(of: order)
    let renewal = try await marketplace.renew(parties.customer, instance: instance.id)
    _ = try await marketplace.waitForOrder(renewal.id)
    _ = try await platform.orders(as: .distributor, parties.distributor) {
      try await $0.refundOrder(
        .with {
          $0.orderID = order.id
          $0.reason = "customer asked"
        })
    }
    _ = try await marketplace.waitForOrder(order.id) {
      $0.order?.status == .refunded && $0.order?.delivery?.pending == 0
    }
    let linked = try #require(
      try await platform.orders(as: .operator, "ops") { try await $0.getOrder(.with { $0.orderID = order.id }) }.order?
        .linkedOrderIds.first)

    // Everything the services recorded has reached the feed.
    let expected: Set<String> = [
      "service.published", "authorization.applied", "authorization.approved", "order.paid", "order.fulfilled",
      "order.renewed", "order.refunded", "instance.deployed", "instance.renewed", "instance.released",
    ]
    var all: [Event] = []
    let complete = try await eventually {
      all = try await platform.feed(as: .operator, "ops", pageSize: 7)
      return expected.isSubset(of: Set(all.map(\.type)))
        && all.contains { $0.type == "order.refunded" && $0.subject == "order/\(linked)" }
        && all.contains { $0.type == "instance.released" }
    }
    #expect(complete, "the feed has \(Set(all.map(\.type)).sorted())")

    // Numbered per subject, in feed order, from 1; each id once.
    var last: [String: Int64] = [:]
    for event in all {
      #expect(event.sequence == (last[event.subject] ?? 0) + 1, "\(event.subject) \(event.type) #\(event.sequence)")
      last[event.subject] = event.sequence
      #expect(!event.parties.isEmpty, "the operator reads the parties of \(event.type)")
    }
    #expect(Set(all.map(\.id)).count == all.count)

    let feeds = try await Self.expectExactReaders(platform, all, parties)
    for (account, feed) in feeds {
      for event in feed {
        #expect(event.parties.isEmpty, "parties are the platform's routing, not shown to \(account)")
        if account == parties.customer, case .order(let order)? = event.payload {
          #expect(order.wholesale == nil && order.linkedOrderIds.isEmpty, "\(event.type) shows the customer \(order)")
        }
        if account == parties.customer, case .instance(let instance)? = event.payload {
          #expect(instance.subscription?.plan?.wholesaleUnitPrice == nil)
        }
      }
    }
    // The customer never sees the linked order.
    let customerFeed = feeds[parties.customer]!
    #expect(!customerFeed.contains { $0.subject == "order/\(linked)" })
    #expect(
      customerFeed.contains { $0.type == "order.paid" } && customerFeed.contains { $0.type == "instance.deployed" })
    // A service's events go to its owner.
    for event in all where event.subject.hasPrefix("service/") {
      guard case .service(let service)? = event.payload else { continue }
      let owner = service.baseServiceID.isEmpty ? parties.isv : parties.distributor
      for (account, feed) in feeds {
        #expect(feed.contains { $0.id == event.id } == (account == owner), "\(event.type) to \(account)")
      }
    }
    await platform.stop()
  }

  @Test(
    "a scenario-2 sale, a permission request decided, a statement issued and disputed: obligations, statements and requests reach exactly their readers"
  )
  func offlineVisibility() async throws {
    let platform = try await NestTestPlatform.start()
    let marketplace = platform.marketplace
    let parties = ScenarioParties(.scenario2, run: "feed2")
    let setup = try await marketplace.setUp(.scenario2, parties: parties)
    let order = try await marketplace.buy(parties.customer, product: setup.productID)
    _ = try await marketplace.waitForOrder(order.id)
    let instance = try await marketplace.instance(of: order)
    let request = try await marketplace.requestPermission(parties.customer, instance: instance.id)
    _ = try await platform.entitlement(as: .distributor, parties.distributor) {
      try await $0.decidePermissionRequest(
        .with {
          $0.requestID = request.id
          $0.decision = .approve
        })
    }
    let statement = try await platform.settlement(as: .isv, parties.isv) {
      try await $0.issueStatement(
        .with {
          $0.distributorID = parties.distributor
          $0.periodEndUnixMs = NestClock.system.nowUnixMs()
        }
      ).statement ?? .init()
    }
    _ = try await platform.settlement(as: .distributor, parties.distributor) {
      try await $0.disputeStatement(
        .with {
          $0.statementID = statement.id
          $0.reason = "wrong period"
        })
    }
    let expected: Set<String> = [
      "obligation.recorded", "statement.issued", "statement.disputed", "permission_request.requested",
      "permission_request.decided",
    ]
    var all: [Event] = []
    let complete = try await eventually {
      all = try await platform.feed(as: .operator, "ops")
      return expected.isSubset(of: Set(all.map(\.type)))
    }
    #expect(complete, "the feed has \(Set(all.map(\.type)).sorted())")
    _ = try await Self.expectExactReaders(platform, all, parties)
    await platform.stop()
  }

  @Test("a term ending within the notice period is announced once to its parties, and again for the renewed term")
  func expiring() async throws {
    let day = TestClock.dayMs
    let start: Int64 = 1_800_000_000_000
    let platform = try await NestTestPlatform.start(
      settings: [.entitlement: ["term.interval.ms": "20", "expiry.notice.ms": "\(5 * day)"]], clockStartingAt: start)
    let clock = try #require(platform.clock)
    let marketplace = platform.marketplace
    let parties = ScenarioParties(.scenario3, run: "expiring")
    let setup = try await marketplace.setUp(.scenario3, parties: parties)
    let order = try await marketplace.buy(parties.customer, product: setup.productID)
    _ = try await marketplace.waitForOrder(order.id)
    let instance = try await marketplace.instance(of: order)
    func notices(_ role: Nest_Common_V1_Role, _ account: String) async throws -> [Event] {
      try await platform.feed(as: role, account).filter {
        $0.type == "instance.expiring" && $0.subject == "instance/\(instance.id)"
      }
    }
    // Ten days before the end: nothing yet.
    try clock.set(instance.expiresAtUnixMs - 10 * day)
    try await Task.sleep(for: .milliseconds(200))
    #expect(try await notices(.customer, parties.customer).isEmpty)
    // Four days before: announced, to the customer, the distributor and the ISV, once.
    try clock.set(instance.expiresAtUnixMs - 4 * day)
    #expect(try await eventually { try await notices(.customer, parties.customer).count == 1 })
    try clock.set(instance.expiresAtUnixMs - 3 * day)
    try await Task.sleep(for: .milliseconds(200))
    for (role, account) in [
      (Nest_Common_V1_Role.customer, parties.customer), (.distributor, parties.distributor), (.isv, parties.isv),
    ] {
      let seen = try await notices(role, account)
      #expect(seen.count == 1, "\(role): \(seen.count)")
      #expect(
        seen.first.map { if case .instance(let i)? = $0.payload { i.expiresAtUnixMs } else { 0 } }
          == instance.expiresAtUnixMs)
    }
    // Renewed: the new end is announced when it comes near.
    let renewal = try await marketplace.renew(parties.customer, instance: instance.id)
    _ = try await marketplace.waitForOrder(renewal.id)
    let renewed = try await marketplace.instance(instance.id)
    #expect(renewed.expiresAtUnixMs > instance.expiresAtUnixMs)
    try clock.set(renewed.expiresAtUnixMs - 4 * day)
    #expect(try await eventually { try await notices(.customer, parties.customer).count == 2 })
    await platform.stop()
  }

  @Test("the feed refuses a bad cursor, an unknown type and a page too large, naming the field")
  func badRequests() async throws {
    let platform = try await NestTestPlatform.start(services: [.events])
    for (request, field) in [
      (Nest_Events_V1_ListEventsRequest.with { $0.after = "yesterday" }, "after"),
      (.with { $0.types = ["order.teleported"] }, "types"),
      (.with { $0.pageSize = 501 }, "page_size"),
    ] {
      let error = await #expect(throws: RPCError.self) {
        _ = try await platform.events(as: .customer, "c1") { try await $0.listEvents(request) }
      }
      #expect(error?.code == .invalidArgument)
      #expect(error?.fieldViolations.first?.field == field, "\(error?.fieldViolations ?? [])")
    }
    await platform.stop()
  }

  @Test("webhooks: created with a secret shown once, listed as their owner's only, paused, resumed, rotated, deleted")
  func webhooks() async throws {
    let platform = try await NestTestPlatform.start(
      services: [.events], settings: [.events: ["webhook.private.addresses": "allow"]])
    let created = try await platform.events(as: .isv, "isv-1") {
      try await $0.createWebhook(
        .with {
          $0.url = "http://127.0.0.1:9/hook"
          $0.types = ["order.paid", "order.paid", "instance.deployed"]
          $0.clientToken = "hook-1"
        })
    }
    let webhook = try #require(created.webhook)
    #expect(created.secret.hasPrefix("whsec_") && webhook.status == .active)
    #expect(webhook.types == ["instance.deployed", "order.paid"])
    // The same client token gives the same webhook back; another request with it is refused.
    let again = try await platform.events(as: .isv, "isv-1") {
      try await $0.createWebhook(
        .with {
          $0.url = "http://127.0.0.1:9/hook"
          $0.types = ["order.paid", "order.paid", "instance.deployed"]
          $0.clientToken = "hook-1"
        })
    }
    #expect(again.webhook?.id == webhook.id && again.secret == created.secret)
    // Another party neither lists nor touches it.
    let others = try await platform.events(as: .isv, "isv-2") { try await $0.listWebhooks(.init()) }
    #expect(others.webhooks.isEmpty)
    let stranger = await #expect(throws: RPCError.self) {
      _ = try await platform.events(as: .isv, "isv-2") {
        try await $0.pauseWebhook(.with { $0.webhookID = webhook.id })
      }
    }
    #expect(stranger?.code == .notFound)
    let paused = try await platform.events(as: .isv, "isv-1") {
      try await $0.pauseWebhook(.with { $0.webhookID = webhook.id })
    }
    #expect(paused.webhook?.status == .paused)
    let resumed = try await platform.events(as: .isv, "isv-1") {
      try await $0.resumeWebhook(.with { $0.webhookID = webhook.id })
    }
    #expect(resumed.webhook?.status == .active)
    let rotated = try await platform.events(as: .isv, "isv-1") {
      try await $0.rotateWebhookSecret(.with { $0.webhookID = webhook.id })
    }
    #expect(rotated.secret != created.secret && (rotated.webhook?.previousSecretExpiresAtUnixMs ?? 0) > 0)
    let all = try await platform.events(as: .operator, "ops") { try await $0.listWebhooks(.init()) }
    #expect(all.webhooks.map(\.id) == [webhook.id])
    // Refused: bad URLs and types, each naming its field.
    for (request, field) in [
      (Nest_Events_V1_CreateWebhookRequest.with { $0.url = "ftp://example.com" }, "url"),
      (
        .with {
          $0.url = "https://example.com"; $0.types = ["nope"]
        }, "types"
      ),
    ] {
      let error = await #expect(throws: RPCError.self) {
        _ = try await platform.events(as: .isv, "isv-1") { try await $0.createWebhook(request) }
      }
      #expect(error?.code == .invalidArgument && error?.fieldViolations.first?.field == field)
    }
    _ = try await platform.events(as: .isv, "isv-1") { try await $0.deleteWebhook(.with { $0.webhookID = webhook.id }) }
    let gone = try await platform.events(as: .isv, "isv-1") { try await $0.listWebhooks(.init()) }
    #expect(gone.webhooks.isEmpty)
    await platform.stop()
  }

  @Test("with private addresses forbidden, a webhook to loopback is refused, naming the URL")
  func privateAddresses() async throws {
    let platform = try await NestTestPlatform.start(
      services: [.events], settings: [.events: ["webhook.private.addresses": "deny"]])
    for url in [
      "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://169.254.169.254/latest/meta-data",
      "http://[::1]/x",
    ] {
      let error = await #expect(throws: RPCError.self) {
        _ = try await platform.events(as: .isv, "isv-1") { try await $0.createWebhook(.with { $0.url = url }) }
      }
      #expect(error?.code == .invalidArgument && error?.fieldViolations.first?.field == "url", "\(url)")
    }
    await platform.stop()
  }
}
