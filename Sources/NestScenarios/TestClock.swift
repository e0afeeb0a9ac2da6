// A clock a test (or the demo) moves: the services of a NestTestPlatform read their time from it (in-process
// directly, as processes through the file of `--test-clock-file`), so that a year of terms,
// renewals and expiries takes as long as the work, never a sleep. Everything the services
// time goes by it, the outbox's retry backoff included: a test that makes a delivery fail
// moves the clock on for the retry to come due.
public import Foundation
import NIOConcurrencyHelpers
public import NestDomain

public final class TestClock: Sendable {
  private let time: NIOLockedValueBox<Int64>
  /// Where the processes read the time; written whole (a new file renamed over the old one).
  public let file: URL

  public static let dayMs: Int64 = 24 * 3600 * 1000

  public init(startingAt unixMs: Int64, file: URL) throws {
    self.time = NIOLockedValueBox(unixMs)
    self.file = file
    try self.write(unixMs)
  }

  public var nowUnixMs: Int64 { self.time.withLockedValue { $0 } }

  /// The clock the in-process services read.
  public var nestClock: NestClock { NestClock { self.nowUnixMs } }

  /// Moves the time forward by `ms` (never back: terms only move forward).
  public func advance(by ms: Int64) throws {
    precondition(ms >= 0, "a test clock does not go back")
    let now = self.time.withLockedValue {
      $0 += ms
      return $0
    }
    try self.write(now)
  }

  public func advance(days: Int64) throws { try self.advance(by: days * Self.dayMs) }

  /// Moves the time forward to `unixMs`.
  public func set(_ unixMs: Int64) throws { try self.advance(by: max(0, unixMs - self.nowUnixMs)) }

  private func write(_ unixMs: Int64) throws {
    let next = self.file.appendingPathExtension("next")
    try Data("\(unixMs)\n".utf8).write(to: next)
    guard rename(next.path, self.file.path) == 0 else { throw CocoaError(.fileWriteUnknown) }
  }
}
