// What every aggregate's rules share: ids, the time, and the history entries of status
// changes.
import Foundation
public import NestProto
import Synchronization

/// Milliseconds since 1970 (the unit of every `..._unix_ms` field), from a source the service
/// is given: the system clock in production, a clock a test controls in tests.
public struct NestClock: Sendable {
  private let read: @Sendable () -> Int64

  public init(_ read: @escaping @Sendable () -> Int64) { self.read = read }

  public func nowUnixMs() -> Int64 { self.read() }

  /// The system's wall clock.
  public static let system = NestClock { Int64(Date().timeIntervalSince1970 * 1000) }

  /// For tests of time (terms, renewals, expiry) without sleeping: the time in Unix ms read
  /// from `path` at every call. The test replaces the file whole (write, then rename), so a
  /// reader never sees half of it.
  public static func file(_ path: String) -> NestClock {
    NestClock {
      for _ in 0..<100 {
        if let text = try? String(contentsOfFile: path, encoding: .utf8),
          let now = Int64(text.trimmingCharacters(in: .whitespacesAndNewlines))
        {
          return now
        }
      }
      preconditionFailure("the test clock file \(path) holds no time in Unix ms")
    }
  }
}

public enum Identifiers {
  /// A new opaque id such as `svc_3f2a...`.
  public static func new(_ prefix: String) -> String {
    // 80 random bits as 20 lowercase hex digits (a UUID's string, lowercased and cut, cost
    // more than the rest of a small write).
    var generator = SystemRandomNumberGenerator()
    var high = generator.next() as UInt64
    var low = generator.next() as UInt64
    let digits = Array("0123456789abcdef".utf8)
    var hex = [UInt8](repeating: 0, count: 20)
    for index in 0..<16 {
      hex[index] = digits[Int(high & 0xF)]
      high >>= 4
    }
    for index in 16..<20 {
      hex[index] = digits[Int(low & 0xF)]
      low >>= 4
    }
    return prefix + "_" + String(decoding: hex, as: UTF8.self)
  }
}

/// A status enum's name as history entries and messages spell it: `deployFailed` is
/// `DEPLOY_FAILED`.
public func statusName<Status>(_ status: Status) -> String {
  var name = ""
  for character in "\(status)" {
    if character.isUppercase || (character.isNumber && name.last?.isLetter == true) { name.append("_") }
    name.append(contentsOf: character.uppercased())
  }
  return name
}

/// A proto enum's name, from its cases spelled once per enum and process: spelling one
/// describes the value by reflection, which every history entry and delivery on the order path
/// would otherwise pay. A value the enum does not know is spelled anew, so the table stays the
/// size of the enum's cases whatever values arrive.
public func statusName<Status: NestEnum & CaseIterable>(_ status: Status) -> String {
  let type = ObjectIdentifier(Status.self)
  let names =
    spelledStatuses.withLock { $0[type] }
    ?? {
      let names = Dictionary(
        Status.allCases.map { ($0.rawValue, statusName($0 as Any)) }, uniquingKeysWith: { first, _ in first })
      spelledStatuses.withLock { $0[type] = names }
      return names
    }()
  return names[status.rawValue] ?? statusName(status as Any)
}

private let spelledStatuses = Mutex<[ObjectIdentifier: [Int32: String]]>([:])

extension Nest_Common_V1_StatusChange {
  /// A history entry: `status` (an enum case, written as its proto name) entered at `at`.
  public static func entry<Status: NestEnum & CaseIterable>(
    _ status: Status, actor: String, reason: String = "", at: Int64
  ) -> Self {
    .with {
      $0.status = statusName(status)
      $0.changedAtUnixMs = at
      $0.actorID = actor
      $0.reason = reason
    }
  }
}
