// The events service's pure parts: Standard Webhooks signatures (the specification's own
// example), backoff, URLs and the address guard, and proto3 JSON of an event.
import Events
import Foundation
import NestDomain
import NestProto
import NestWebhooks
import Testing

@Suite("Webhook rules")
struct WebhookRulesTests {
  @Test("a signature is the Standard Webhooks one: the specification's example verifies")
  func standardWebhooksExample() {
    // From the Standard Webhooks specification's reference libraries.
    let signature = WebhookRules.signature(
      secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id: "msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp: 1_614_265_330,
      body: Array(#"{"test": 2432232314}"#.utf8))
    #expect(signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    // During a rotation both secrets sign, space-separated.
    let header = WebhookRules.signatureHeader(
      secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", WebhookRules.newSecret()], id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
      timestamp: 1_614_265_330, body: Array(#"{"test": 2432232314}"#.utf8))
    #expect(header.split(separator: " ").count == 2 && header.hasPrefix(signature + " "))
  }

  @Test("a new secret is whsec_ and 32 random bytes, never twice the same")
  func secrets() {
    let one = WebhookRules.newSecret()
    #expect(one.hasPrefix("whsec_") && Data(base64Encoded: String(one.dropFirst(6)))?.count == 32)
    #expect(one != WebhookRules.newSecret())
  }

  @Test("backoff doubles from the initial wait up to the cap; a webhook is exhausted after the window")
  func backoff() {
    let waits = (1...8).map { WebhookRules.backoff(attempts: $0, initial: .seconds(1), maximum: .seconds(30)) }
    #expect(waits == [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000])
    #expect(!WebhookRules.exhausted(failingSince: 0, now: 10_000_000, window: .seconds(1)))
    #expect(!WebhookRules.exhausted(failingSince: 1_000, now: 1_999, window: .seconds(1)))
    #expect(WebhookRules.exhausted(failingSince: 1_000, now: 2_000, window: .seconds(1)))
  }

  @Test(
    "only http and https URLs with a host and no credentials",
    arguments: [
      ("", false), ("ftp://example.com/hook", false), ("file:///etc/passwd", false), ("http://", false),
      ("https://user:pw@example.com/hook", false), ("not a url", false), ("http://example.com/hook", true),
      ("https://example.com:8443/a?b=c", true),
    ])
  func urls(_ url: String, _ accepted: Bool) {
    do {
      _ = try WebhookRules.check(url: url)
      #expect(accepted, "\(url) was accepted")
    } catch {
      #expect(!accepted && error.violations.first?.field == "url", "\(url): \(error)")
    }
  }

  @Test("the guard forbids loopback, private, link-local, shared, multicast and unspecified addresses")
  func addresses() {
    for forbidden in [
      "127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254", "100.64.0.1",
      "0.0.0.0", "224.0.0.1", "::1", "::", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "ff02::1",
    ] {
      #expect(AddressGuard.isForbidden(forbidden), "\(forbidden)")
    }
    for allowed in ["8.8.8.8", "172.32.0.1", "93.184.216.34", "2606:4700::1111"] {
      #expect(!AddressGuard.isForbidden(allowed), "\(allowed)")
    }
  }

  @Test("a private host is refused with the field named; with private addresses allowed it passes")
  func guardCheck() async throws {
    let url = try WebhookRules.check(url: "http://127.0.0.1:9/hook")
    let error = await #expect(throws: DomainError.self) {
      try await AddressGuard(allowPrivate: false).check(url, field: "url")
    }
    #expect(error?.violations.first?.field == "url")
    try await AddressGuard(allowPrivate: true).check(url, field: "url")
    let named = try WebhookRules.check(url: "http://localhost:9/hook")
    await #expect(throws: DomainError.self) { try await AddressGuard(allowPrivate: false).check(named, field: "url") }
  }

  @Test(
    "an event as proto3 JSON: camelCase names, defaults left out, 64-bit integers as strings, enum names, maps as objects"
  )
  func json() throws {
    let event = Event.with {
      $0.id = "evt_1"
      $0.type = "order.paid"
      $0.occurredAtUnixMs = 1_700_000_000_123
      $0.subject = "order/ord_1"
      $0.sequence = 2
      $0.payload = .order(
        .with {
          $0.id = "ord_1"
          $0.status = .paid
          $0.quantity = 3
          $0.labels = ["po": "A-1 \"quoted\"\n"]
          $0.price = .with { $0.amount = MoneyMath.money("USD", 47_994) }
        })
    }
    let text = try event.jsonString()
    let object = try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    #expect(object["occurredAtUnixMs"] as? String == "1700000000123")
    #expect(object["sequence"] as? String == "2")
    #expect(object["cursor"] == nil && object["parties"] == nil && object["source"] == nil)
    let order = try #require(object["order"] as? [String: Any])
    #expect(order["status"] as? String == "ORDER_STATUS_PAID")
    #expect(order["quantity"] as? Int == 3)
    #expect((order["labels"] as? [String: String])?["po"] == "A-1 \"quoted\"\n")
    #expect(((order["price"] as? [String: Any])?["amount"] as? [String: Any])?["amountMinor"] as? String == "47994")
    #expect(order["wholesale"] == nil && order["trial"] == nil)
  }
}
