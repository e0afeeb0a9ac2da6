// The role matrices' shared parts: the callers (the owners of a fixture's resources,
// strangers of each role, the platform) and what counts as allowed. "Allowed" means the
// call got past authorization: it succeeded or failed for a business reason (a
// FAILED_PRECONDITION, say), never PERMISSION_DENIED, NOT_FOUND or UNAUTHENTICATED; refused
// means PERMISSION_DENIED or NOT_FOUND (docs/design.md §4).
public import GRPCCore
public import NestProto

public enum Who: String, CaseIterable, Sendable {
  case isv1, isv2, dist1, dist2, cust1, cust2, op, svc

  public var principal: (role: Nest_Common_V1_Role, subject: String) {
    switch self {
    case .isv1: (.isv, "isv-1")
    case .isv2: (.isv, "isv-2")
    case .dist1: (.distributor, "dist-1")
    case .dist2: (.distributor, "dist-2")
    case .cust1: (.customer, "cust-1")
    case .cust2: (.customer, "cust-2")
    case .op: (.operator, "op-1")
    case .svc: (.service, "order")
    }
  }

  /// Strangers first, then the allowed: an allowed caller's change cannot hide a refusal.
  public static func order(allowed: Set<Who>) -> [Who] {
    Self.allCases.filter { !allowed.contains($0) } + Self.allCases.filter { allowed.contains($0) }
  }

  /// What is wrong with `code` (nil: the call succeeded) for a caller who should, or should
  /// not, be allowed; nil when it is as the declarations say.
  public static func problem(allowed: Bool, code: RPCError.Code?) -> String? {
    let refusal: Set<RPCError.Code> = [.permissionDenied, .notFound]
    if allowed {
      guard let code, refusal.contains(code) || code == .unauthenticated else { return nil }
      return "refused: \(code)"
    }
    guard let code, refusal.contains(code) else { return "not refused: \(code.map { "\($0)" } ?? "OK")" }
    return nil
  }
}
