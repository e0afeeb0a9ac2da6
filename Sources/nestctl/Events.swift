// `nestctl events list|watch` and `nestctl webhooks ...`: a partner's view of the event feed
// and its webhooks, with the caller's token (--token / NEST_TOKEN). `webhooks listen` runs a
// local receiver that checks each delivery's Standard Webhooks signature and prints what
// arrives, so that a partner can try the integration in one terminal.
import ArgumentParser
import Events
import Foundation
import GRPCCore
import NestDomain
import NestProto
import NestServiceKit
import NestWebhooks

#if canImport(Glibc)
  import Glibc
#endif

/// One line per event: where it is in the feed, what and whom it is about.
func describe(_ event: Nest_Events_V1_Event) -> String {
  let time = Date(timeIntervalSince1970: Double(event.occurredAtUnixMs) / 1000).formatted(.iso8601)
  return "\(event.cursor)\t\(time)\t\(event.type)\t\(event.subject) #\(event.sequence)\t\(event.id)"
}

struct EventsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "events", abstract: "The event feed: what happened that the caller may read.",
    subcommands: [List.self, Watch.self])

  struct FeedOptions: ParsableArguments {
    @Option(help: "Start after this cursor (the first column of a line); default: the oldest kept.")
    var after: String = ""
    @Option(name: .customLong("type"), help: "Only events of this type (repeatable), e.g. order.paid.")
    var types: [String] = []
    @Option(help: "Only events of this subject, e.g. order/ord_....") var subject: String = ""
    @Flag(help: "Print each event as proto3 JSON, one per line.") var json = false

    func print(_ events: [Nest_Events_V1_Event]) throws {
      for event in events { Swift.print(self.json ? try event.jsonString() : describe(event)) }
      fflush(nil)
    }

    func page(_ client: any ServiceClientSet, after: String) async throws -> Nest_Events_V1_ListEventsResponse {
      try await client.events.listEvents(
        .with {
          $0.after = after
          $0.types = self.types
          $0.subject = self.subject
          $0.pageSize = 500
        })
    }
  }

  struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the feed from a cursor to its end.")
    @OptionGroup var feed: FeedOptions
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
      try await reportingErrors {
        try await self.connection.withClient(.events) { client in
          var cursor = self.feed.after
          while true {
            let page = try await self.feed.page(client, after: cursor)
            try self.feed.print(page.events)
            guard !page.events.isEmpty else { return }
            cursor = page.cursor
          }
        }
      }
    }
  }

  struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Print the feed and follow it as it grows (Ctrl-C stops).")
    @OptionGroup var feed: FeedOptions
    @Option(help: "Milliseconds between looks once the end is reached.") var intervalMs: Int = 1000
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
      try await reportingErrors {
        try await self.connection.withClient(.events) { client in
          var cursor = self.feed.after
          while !Task.isCancelled {
            let page = try await self.feed.page(client, after: cursor)
            try self.feed.print(page.events)
            cursor = page.cursor
            if page.events.isEmpty { try await Task.sleep(for: .milliseconds(self.intervalMs)) }
          }
        }
      }
    }
  }
}

func describe(_ webhook: Nest_Events_V1_Webhook) -> String {
  let types = webhook.types.isEmpty ? "every type" : webhook.types.joined(separator: ",")
  let reason = webhook.disabledReason.isEmpty ? "" : " (\(webhook.disabledReason))"
  return "\(webhook.id)\t\(statusName(webhook.status))\(reason)\t\(webhook.url)\t\(types)"
}

struct WebhooksCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "webhooks", abstract: "The caller's webhooks: the feed POSTed to a URL, signed.",
    subcommands: [
      Create.self, List.self, Delete.self, Rotate.self, Pause.self, Resume.self, Redeliver.self, Deliveries.self,
      Listen.self,
    ])

  struct Create: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Subscribe a URL; prints the signing secret, shown this once.")
    @Argument(help: "http:// or https:// URL.") var url: String
    @Option(name: .customLong("type"), help: "An event type to receive (repeatable); default: all.")
    var types: [String] = []
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
      try await reportingErrors {
        let created = try await self.connection.withClient(.events) { client in
          try await client.events.createWebhook(
            .with {
              $0.clientToken = "nestctl-\(UUID())"
              $0.url = self.url
              $0.types = self.types
            })
        }
        print(describe(created.webhook ?? .init()))
        print("secret: \(created.secret)")
      }
    }
  }

  struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The caller's webhooks (an operator's: all).")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
      try await reportingErrors {
        let webhooks = try await self.connection.withClient(.events) { client in
          try await Pages.all { token in
            let page = try await client.events.listWebhooks(.with { $0.page = .with { $0.pageToken = token } })
            return (page.webhooks, page.page?.nextPageToken ?? "")
          }
        }
        for webhook in webhooks { print(describe(webhook)) }
      }
    }
  }

  /// A webhook id, and how to reach the events service.
  struct One: ParsableArguments {
    @Argument(help: "The webhook id.") var webhook: String
    @OptionGroup var connection: ConnectionOptions

    /// Makes `call` about the webhook and prints the webhook it answers with.
    func printing(
      _ call:
        @Sendable (any Nest_Events_V1_EventsService.ClientProtocol, String) async throws -> Nest_Events_V1_Webhook?
    ) async throws {
      try await reportingErrors {
        let webhook = try await self.connection.withClient(.events) { try await call($0.events, self.webhook) }
        print(webhook.map(describe) ?? "deleted \(self.webhook)")
      }
    }
  }

  struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove a webhook and its pending deliveries.")
    @OptionGroup var one: One

    func run() async throws {
      try await self.one.printing { client, id in
        _ = try await client.deleteWebhook(.with { $0.webhookID = id })
        return nil
      }
    }
  }

  struct Rotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "A new signing secret; the old one signs beside it for --overlap-seconds.")
    @OptionGroup var one: One
    @Option(help: "Seconds the old secret still signs (0: a day).") var overlapSeconds: Int64 = 0

    func run() async throws {
      try await reportingErrors {
        let rotated = try await self.one.connection.withClient(.events) {
          try await $0.events.rotateWebhookSecret(
            .with {
              $0.webhookID = self.one.webhook
              $0.overlapSeconds = self.overlapSeconds
            })
        }
        print(describe(rotated.webhook ?? .init()))
        print("secret: \(rotated.secret)")
      }
    }
  }

  struct Pause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop deliveries; events are queued meanwhile.")
    @OptionGroup var one: One

    func run() async throws {
      try await self.one.printing { client, id in try await client.pauseWebhook(.with { $0.webhookID = id }).webhook }
    }
  }

  struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Deliver again (after a pause or a disable).")
    @OptionGroup var one: One

    func run() async throws {
      try await self.one.printing { client, id in try await client.resumeWebhook(.with { $0.webhookID = id }).webhook }
    }
  }

  struct Redeliver: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Deliver one event to the webhook again.")
    @OptionGroup var one: One
    @Argument(help: "The event id.") var event: String

    func run() async throws {
      try await reportingErrors {
        let delivery =
          try await self.one.connection.withClient(.events) {
            try await $0.events.redeliverEvent(
              .with {
                $0.webhookID = self.one.webhook
                $0.eventID = self.event
              })
          }.delivery ?? .init()
        print("\(delivery.id)\t\(statusName(delivery.status))\t\(delivery.eventType)\t\(delivery.subject)")
      }
    }
  }

  struct Deliveries: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "A webhook's deliveries, newest first, with attempts and the last error.")
    @OptionGroup var one: One

    func run() async throws {
      try await reportingErrors {
        let deliveries = try await self.one.connection.withClient(.events) { client in
          try await client.events.listWebhookDeliveries(.with { $0.webhookID = self.one.webhook }).deliveries
        }
        for delivery in deliveries {
          print(
            "\(delivery.id)\t\(statusName(delivery.status))\t\(delivery.eventType)\t\(delivery.subject) #\(delivery.sequence)\t\(delivery.attempts) attempt(s)"
              + (delivery.lastError.isEmpty ? "" : "\t\(delivery.lastError)"))
        }
      }
    }
  }

  struct Listen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Receive webhooks on a local port: check each signature, print the event, answer 204.")
    @Option(help: "Port to listen on (127.0.0.1).") var port: Int = 8090
    @Option(help: "The webhook's secret (NEST_WEBHOOK_SECRET): deliveries whose signature fails get 401.")
    var secret: String?
    @Option(help: "Stop after this many deliveries (0: never).") var count: Int = 0

    func run() async throws {
      guard let secret = self.secret ?? ProcessInfo.processInfo.environment["NEST_WEBHOOK_SECRET"], !secret.isEmpty
      else { throw ValidationError("--secret or NEST_WEBHOOK_SECRET is required") }
      let server = try ListeningSocket(host: "127.0.0.1", port: self.port)
      print("listening on http://127.0.0.1:\(server.port)/")
      fflush(nil)
      var received = 0
      while self.count == 0 || received < self.count {
        let connection = accept(server.descriptor, nil, nil)
        guard connection >= 0 else { continue }
        defer { close(connection) }
        guard let request = HTTPRequestReader.read(connection) else { continue }
        let verdict = Self.verify(request, secret: secret)
        let status = verdict == nil ? "204 No Content" : "401 Unauthorized"
        _ = "HTTP/1.1 \(status)\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".withCString {
          write(connection, $0, strlen($0))
        }
        if let verdict {
          print("refused: \(verdict)")
        } else {
          received += 1
          let id = request.headers["webhook-id"] ?? ""
          if let event = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any] {
            print("\(id)\t\(event["type"] ?? "")\t\(event["subject"] ?? "") #\(event["sequence"] ?? "")\tsignature ok")
          }
          print(String(decoding: request.body, as: UTF8.self))
        }
        fflush(nil)
      }
      server.close()
    }

    /// Why a delivery is refused (nil: its signature holds and its timestamp is recent).
    static func verify(_ request: HTTPRequestReader.Request, secret: String) -> String? {
      guard let id = request.headers["webhook-id"], let timestampText = request.headers["webhook-timestamp"],
        let timestamp = Int64(timestampText), let signatures = request.headers["webhook-signature"]
      else { return "webhook-id, webhook-timestamp or webhook-signature missing" }
      guard abs(Int64(Date().timeIntervalSince1970) - timestamp) <= 300 else {
        return "timestamp more than 5 minutes away"
      }
      let expected = WebhookRules.signature(secret: secret, id: id, timestamp: timestamp, body: request.body)
      guard signatures.split(separator: " ").contains(where: { $0 == expected }) else { return "signature mismatch" }
      return nil
    }
  }
}

/// Just enough HTTP/1.1 to read one request: its head and a content-length body.
enum HTTPRequestReader {
  struct Request {
    var headers: [String: String]
    var body: [UInt8]
  }

  static func read(_ socket: CInt) -> Request? {
    var data: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    var head: (end: Int, headers: [String: String])? = nil
    while data.count < 16 << 20 {
      let count = recv(socket, &buffer, buffer.count, 0)
      guard count > 0 else { return nil }
      data += buffer[0..<count]
      if head == nil, let end = data.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound {
        var headers: [String: String] = [:]
        for line in String(decoding: data[..<end], as: UTF8.self).split(separator: "\r\n").dropFirst() {
          guard let colon = line.firstIndex(of: ":") else { continue }
          headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        head = (end, headers)
      }
      if let head {
        let length = Int(head.headers["content-length"] ?? "0") ?? 0
        if data.count - head.end >= length {
          return Request(headers: head.headers, body: Array(data[head.end..<(head.end + length)]))
        }
      }
    }
    return nil
  }
}
