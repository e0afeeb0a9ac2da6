// What every aggregate's rules share: ids, the time, and the history entries of status
// changes.
import Foundation
public import NestProto

/// Milliseconds since 1970 (the unit of every `..._unix_ms` field), from a source the service
/// is given: the system clock in production, a clock a test controls in tests.
public struct NestClock: Sendable {
  private let read: @Sendable () -> Int64

  public init(_ read: @escaping @Sendable () -> Int64) { self.read = read }

  public func nowUnixMs() -> Int64 { self.read() }

  /// The system's wall clock.
  public static let system = NestClock { Int64(Date().timeIntervalSince1970 * 1000) }
}

public enum Identifiers {
  /// A new opaque id such as `svc_3f2a...`.
  public static func new(_ prefix: String) -> String {
    "\(prefix)_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(20))"
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

extension Nest_Common_V1_StatusChange {
  /// A history entry: `status` (an enum case, written as its proto name) entered at `at`.
  public static func entry<Status: Sendable>(_ status: Status, actor: String, reason: String = "", at: Int64) -> Self {
    .with {
      $0.status = statusName(status)
      $0.changedAtUnixMs = at
      $0.actorID = actor
      $0.reason = reason
    }
  }
}
