// A storage failure reaches a caller as a documented code with a short reason, and its cause
// reaches the service's log: real SQLite errors, made here, through the service's mapping.
import Foundation
import GRDB
import GRPCCore
import Logging
import NIOConcurrencyHelpers
import NestServiceKit
import Testing

/// Keeps every log message and its metadata.
final class RecordingLogHandler: LogHandler, @unchecked Sendable {
  // @unchecked: `lines` is guarded by its box.
  let lines = NIOLockedValueBox<[String]>([])
  var metadata: Logger.Metadata = [:]
  var logLevel: Logger.Level = .trace

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { self.metadata[key] }
    set { self.metadata[key] = newValue }
  }

  func log(event: LogEvent) {
    let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    self.lines.withLockedValue { $0.append("\(event.level) \(event.message) \(fields.joined(separator: " "))") }
  }
}

@Suite("Storage failures")
struct StorageFailureTests {
  func failure(_ body: (Database) throws -> Void, setUp: (Database) throws -> Void = { _ in }) throws -> DatabaseError {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("storage-\(UUID()).sqlite").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    let queue = try DatabaseQueue(path: path)
    try queue.writeWithoutTransaction(setUp)
    do {
      try queue.write(body)
    } catch let error as DatabaseError {
      return error
    }
    throw RPCError(code: .internalError, message: "no failure")
  }

  @Test("a full disk is RESOURCE_EXHAUSTED, \"the service's storage is full\", with SQLITE_FULL in the log")
  func diskFull() throws {
    let error = try self.failure { db in
      try db.execute(sql: "INSERT INTO t VALUES (zeroblob(1000000))")
    } setUp: { db in
      try db.execute(sql: "CREATE TABLE t (v BLOB)")
      // The file may not grow past a few pages: what a full disk does to a write.
      try db.execute(sql: "PRAGMA max_page_count = 8")
    }
    #expect(error.resultCode == .SQLITE_FULL)
    let handler = RecordingLogHandler()
    let mapper = ErrorMappingInterceptor(logger: Logger(label: "test") { _ in handler })
    let status = mapper.map(error, method: "nest.settlement.v1.SettlementService/RecordSale")
    #expect(status.code == .resourceExhausted)
    #expect(status.message == "the service's storage is full")
    let logged = handler.lines.withLockedValue { $0 }
    #expect(logged.count == 1)
    #expect(logged.first?.contains("SQLITE_FULL") == true, "\(logged)")
    #expect(logged.first?.contains("method=nest.settlement.v1.SettlementService/RecordSale") == true)
  }

  @Test("a database locked past the busy timeout is UNAVAILABLE: retrying can help")
  func busy() throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("busy-\(UUID()).sqlite").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    let holder = try DatabaseQueue(path: path)
    try holder.write { try $0.execute(sql: "CREATE TABLE t (v INTEGER)") }
    var configuration = Configuration()
    configuration.busyMode = .immediateError
    let other = try DatabaseQueue(path: path, configuration: configuration)
    var failure: DatabaseError?
    try holder.inTransaction(.exclusive) { _ in
      do {
        try other.write { try $0.execute(sql: "INSERT INTO t VALUES (1)") }
      } catch let error as DatabaseError {
        failure = error
      }
      return .rollback
    }
    let error = try #require(failure)
    #expect(error.resultCode == .SQLITE_BUSY)
    let status = RPCError.status(of: error)
    #expect(status.status.code == .unavailable)
    #expect(status.cause?.contains("SQLITE_BUSY") == true)
  }

  @Test("anything else unexpected is INTERNAL with no internals in the message, and the cause logged")
  func unexpected() {
    struct Oops: Error {}
    let (status, cause) = RPCError.status(of: Oops())
    #expect(status.code == .internalError)
    #expect(status.message == "internal error")
    #expect(cause == "Oops()")
  }
}
