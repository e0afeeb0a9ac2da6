// nest-bench events: what one events service delivers to a local receiver. The platform runs
// as processes (the events service as its executable does); a receiver in this process
// answers 204 on keep-alive connections; `--webhooks` webhooks of the operator's (each gets
// every event) point at it. Events are published as the catalog service publishes them
// (PublishEvents, batches of 500, over `--subjects` subjects), then the clock runs until the
// receiver has every delivery. Printed: events/s stored, deliveries/s, the events service's
// CPU per delivery, the receiver's count.
//
//   Benchmarks/.build/release/nest-bench events [--events 20000] [--subjects 200] [--webhooks 1]
import Foundation
import NestProto
import NestServiceKit
import NestTestKit

#if canImport(Glibc)
  import Glibc
#endif

/// Answers every request 204, on as many keep-alive connections as are opened; counts them.
final class CountingReceiver: @unchecked Sendable {
  let socket: ListeningSocket
  private let lock = NSLock()
  private var count = 0

  init() throws {
    self.socket = try ListeningSocket(host: "127.0.0.1", port: 0)
    Thread.detachNewThread { self.acceptLoop() }
  }

  var received: Int { self.lock.withLock { self.count } }

  private func acceptLoop() {
    while true {
      let connection = accept(self.socket.descriptor, nil, nil)
      guard connection >= 0 else { return }
      Thread.detachNewThread { self.serve(connection) }
    }
  }

  /// Reads requests (head, then content-length bytes) and answers each at once.
  private func serve(_ connection: CInt) {
    defer { Glibc.close(connection) }
    var pending: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    let answer = Array("HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n".utf8)
    while true {
      let read = recv(connection, &buffer, buffer.count, 0)
      guard read > 0 else { return }
      pending += buffer[0..<read]
      while let end = pending.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound {
        let head = String(decoding: pending[..<end], as: UTF8.self).lowercased()
        let length =
          head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
          .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
        guard pending.count >= end + length else { break }
        pending.removeFirst(end + length)
        self.lock.withLock { self.count += 1 }
        _ = answer.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, 0) }
      }
    }
  }
}

func eventsBench(executables: URL, events: Int, subjects: Int, webhooks: Int) async throws {
  let platform = try await NestTestPlatform.start(.processes(executables: executables))
  let eventsPID = platform.processes!.pid(.events)!
  let receiver = try CountingReceiver()
  for index in 0..<webhooks {
    _ = try await platform.events(as: .operator, "bench") {
      try await $0.createWebhook(.with { $0.url = "http://127.0.0.1:\(receiver.socket.port)/hook-\(index)" })
    }
  }
  let token = try await platform.token(.service, "catalog")
  let run = UUID().uuidString.prefix(8)
  var sequences = [Int64](repeating: 0, count: subjects)
  let before = usage(eventsPID).cpu
  let start = ContinuousClock.now
  var published = 0
  while published < events {
    let batch = (published..<min(published + 500, events)).map { index in
      let subject = index % subjects
      sequences[subject] += 1
      return Nest_Events_V1_Event.with {
        $0.id = "evt_bench_\(run)_\(index)"
        $0.type = "service.published"
        $0.occurredAtUnixMs = now()
        $0.subject = "service/svc_bench_\(run)_\(subject)"
        $0.sequence = sequences[subject]
        $0.source = "catalog"
        $0.parties = [
          .with {
            $0.role = .isv; $0.accountID = "isv-bench-\(subject)"
          }
        ]
        $0.payload = .service(
          .with {
            $0.id = "svc_bench_\(run)_\(subject)"; $0.name = "bench \(subject)"
          })
      }
    }
    _ = try await platform.withClient(.events, token: token) {
      try await $0.events.publishEvents(.with { $0.events = batch })
    }
    published += batch.count
  }
  let stored = ContinuousClock.now - start
  let expected = events * webhooks
  while receiver.received < expected && ContinuousClock.now - start < .seconds(600) {
    try await Task.sleep(for: .milliseconds(20))
  }
  let delivered = ContinuousClock.now - start
  let cpu = usage(eventsPID).cpu - before
  print(
    "nest-bench events: \(events) events over \(subjects) subjects, \(webhooks) webhook(s) to a local receiver, "
      + "\(ProcessInfo.processInfo.activeProcessorCount) cores")
  print(String(format: "  stored (PublishEvents, batches of 500): %.0f events/s", Double(events) / stored.seconds))
  print(
    String(
      format: "  delivered: %d of %d in %.2f s: %.0f deliveries/s", receiver.received, expected, delivered.seconds,
      Double(receiver.received) / delivered.seconds))
  print(String(format: "  events service CPU: %.0f us per delivery", cpu / Double(max(1, receiver.received)) * 1e6))
  await platform.stop()
}
