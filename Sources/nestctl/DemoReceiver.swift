// What a partner of the demo receives: a receiver on a loopback port inside nestctl (the
// same signature check as `nestctl webhooks listen`), which the demo subscribes the
// scenario-3 ISV's webhook to, and then shows what arrived.
import Events
import Foundation
import NestProto
import NestScenarios
import NestServiceKit

#if canImport(Glibc)
  import Glibc
#endif

/// Accepts deliveries on a thread of its own until closed; keeps each one's verdict.
final class DemoReceiver: @unchecked Sendable {
  struct Delivery: Sendable {
    var id: String
    var type: String
    var subject: String
    var sequence: String
    /// nil: the signature held.
    var refused: String?
  }

  let socket: ListeningSocket
  private let lock = NSLock()
  private var secret = ""
  private var deliveries: [Delivery] = []

  init() throws {
    self.socket = try ListeningSocket(host: "127.0.0.1", port: 0)
    Thread.detachNewThread { self.serve() }
  }

  var url: String { "http://127.0.0.1:\(self.socket.port)/demo" }

  func use(secret: String) { self.lock.withLock { self.secret = secret } }

  var received: [Delivery] { self.lock.withLock { self.deliveries } }

  private func serve() {
    while true {
      let connection = accept(self.socket.descriptor, nil, nil)
      guard connection >= 0 else { return }  // closed
      if let request = HTTPRequestReader.read(connection) {
        let secret = self.lock.withLock { self.secret }
        let refused = WebhooksCommand.Listen.verify(request, secret: secret)
        let answer = refused == nil ? "204 No Content" : "401 Unauthorized"
        _ = "HTTP/1.1 \(answer)\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".withCString {
          write(connection, $0, strlen($0))
        }
        let event = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any] ?? [:]
        self.lock.withLock {
          self.deliveries.append(
            Delivery(
              id: request.headers["webhook-id"] ?? "", type: event["type"] as? String ?? "",
              subject: event["subject"] as? String ?? "", sequence: event["sequence"] as? String ?? "",
              refused: refused))
        }
      }
      Glibc.close(connection)
    }
  }

  func close() {
    shutdown(self.socket.descriptor, Int32(SHUT_RDWR))
    self.socket.close()
  }
}

extension Demo {
  /// Subscribes the ISV to `receiver`; false (with why) when the platform refuses it (its
  /// events service forbids loopback addresses, as in production).
  func subscribe(_ receiver: DemoReceiver, isv: String) async throws -> Bool {
    do {
      let created = try await self.marketplace.platform.events(as: .isv, isv) {
        try await $0.createWebhook(.with { $0.url = receiver.url })
      }
      receiver.use(secret: created.secret)
      print("  ISV \(isv) subscribes a webhook \(created.webhook?.id ?? "") to \(receiver.url)")
      return true
    } catch {
      print("  (no webhook: \(describe(error)))")
      return false
    }
  }

  /// Waits until the receiver has every event of the ISV's feed, and prints them.
  func showReceived(_ receiver: DemoReceiver, isv: String) async throws {
    let feed = try await self.marketplace.platform.feed(as: .isv, isv)
    let ids = Set(feed.map(\.id))
    _ = try await eventually(timeout: .seconds(30)) { ids.isSubset(of: Set(receiver.received.map(\.id))) }
    let received = receiver.received
    let verified = received.filter { $0.refused == nil }
    print("  the ISV's webhook received \(verified.count) of its \(feed.count) events, each signature verified:")
    for delivery in verified {
      print("    \(delivery.type)  \(delivery.subject) #\(delivery.sequence)  webhook-id \(delivery.id)")
    }
    for delivery in received where delivery.refused != nil {
      print("    refused \(delivery.id): \(delivery.refused ?? "")")
    }
  }
}
