// Who is calling and what they may do (DESIGN section 4), ids and the clock: what every
// service's handlers start with.
import Foundation
public import GRPCCore
public import NestAuth
public import NestProto

public enum Caller {
  /// The authenticated caller, if its role is one of `roles` (any role when empty);
  /// UNAUTHENTICATED without a caller, PERMISSION_DENIED for another role.
  public static func require(_ roles: Nest_Common_V1_Role...) throws -> Principal {
    guard let principal = Principal.current else {
      throw RPCError(code: .unauthenticated, message: "no authenticated caller")
    }
    guard roles.isEmpty || roles.contains(principal.role) else {
      throw RPCError(
        code: .permissionDenied,
        message:
          "role \(principal.role.claim ?? "?") may not call this; allowed: \(roles.compactMap(\.claim).joined(separator: ", "))"
      )
    }
    return principal
  }

  /// Operators and peer services see everything.
  public static func isPlatform(_ principal: Principal) -> Bool {
    principal.role == .operator || principal.role == .service
  }

  /// A new opaque id such as `svc_3f2a...`.
  public static func newID(_ prefix: String) -> String {
    "\(prefix)_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(20))"
  }
}

/// Milliseconds since 1970, the unit of every `..._unix_ms` field.
public enum Clock {
  public static func nowUnixMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
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
