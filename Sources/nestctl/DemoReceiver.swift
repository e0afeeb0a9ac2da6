// What a partner of the demo receives: a receiver on a loopback port inside nestctl (the
// same signature check as `nestctl webhooks listen`), which the demo subscribes the
// scenario-3 ISV's webhook to and registers as the fulfilment endpoint of the ISV's A (it
// answers a `create` with its own logon URL), and then shows what arrived.
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
    /// The event's type, or for a fulfilment call "fulfil <action>".
    var type: String
    var subject: String
    var sequence: String
    /// nil: the signature held.
    var refused: String?
  }

  let socket: ListeningSocket
  private let lock = NSLock()
  private var secret = ""
  private var fulfilmentSecret = ""
  private var deliveries: [Delivery] = []

  init() throws {
    self.socket = try ListeningSocket(host: "127.0.0.1", port: 0)
    Thread.detachNewThread { self.serve() }
  }

  var url: String { "http://127.0.0.1:\(self.socket.port)/demo" }

  func use(secret: String) { self.lock.withLock { self.secret = secret } }

  func use(fulfilmentSecret: String) { self.lock.withLock { self.fulfilmentSecret = fulfilmentSecret } }

  var received: [Delivery] { self.lock.withLock { self.deliveries } }

  private func serve() {
    while true {
      let connection = accept(self.socket.descriptor, nil, nil)
      guard connection >= 0 else { return }  // closed
      if let request = HTTPRequestReader.read(connection) {
        let body = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any] ?? [:]
        // A fulfilment call names its action; an event its type.
        let action = body["action"] as? String
        let instance = body["instance"] as? [String: Any] ?? [:]
        let secret = self.lock.withLock { action == nil ? self.secret : self.fulfilmentSecret }
        let refused = WebhooksCommand.Listen.verify(request, secret: secret)
        var answer = refused == nil ? "204 No Content" : "401 Unauthorized"
        var content = ""
        if refused == nil, action == "create", let id = instance["id"] as? String {
          answer = "200 OK"
          content = #"{"logon_url": "https://console.isv.example/\#(id)", "facts": {"admin_user": "admin"}}"#
        }
        _ = "HTTP/1.1 \(answer)\r\ncontent-length: \(content.utf8.count)\r\nconnection: close\r\n\r\n\(content)"
          .withCString { write(connection, $0, strlen($0)) }
        self.lock.withLock {
          self.deliveries.append(
            Delivery(
              id: request.headers["webhook-id"] ?? "",
              type: action.map { "fulfil \($0)" } ?? body["type"] as? String ?? "",
              subject: action == nil ? body["subject"] as? String ?? "" : "instance/\(instance["id"] as? String ?? "")",
              sequence: body["sequence"] as? String ?? "", refused: refused))
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

  /// Registers `receiver` as the fulfilment endpoint of the ISV's A (scenario 3's instances
  /// are the ISV's to run); false (with why) when the platform refuses it.
  func registerFulfilment(_ receiver: DemoReceiver, isv: String, service: String) async throws -> Bool {
    do {
      let secret = try await self.marketplace.setFulfilmentEndpoint(
        .isv, isv, service: service, url: receiver.url + "/fulfil")
      receiver.use(fulfilmentSecret: secret)
      print("  ISV \(isv) registers \(receiver.url)/fulfil as the fulfilment endpoint of A")
      return true
    } catch {
      print("  (no fulfilment endpoint: \(describe(error)))")
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
    let calls = verified.filter { $0.type.hasPrefix("fulfil ") }.count
    print(
      "  the ISV's endpoint received \(verified.count - calls) of its \(feed.count) events and \(calls) fulfilment calls, each signature verified:"
    )
    for delivery in verified {
      let sequence = delivery.sequence.isEmpty ? "" : " #\(delivery.sequence)"
      print("    \(delivery.type)  \(delivery.subject)\(sequence)  webhook-id \(delivery.id)")
    }
    for delivery in received where delivery.refused != nil {
      print("    refused \(delivery.id): \(delivery.refused ?? "")")
    }
  }
}
