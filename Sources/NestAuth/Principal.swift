// Who is calling: the verified claims of the caller's token, for handlers to authorize on.
public import NestProto

/// The authenticated caller of the current RPC.
public struct Principal: Sendable, Hashable {
  /// The account id (`sub`), or the calling service's name for role `service`.
  public var subject: String
  public var role: Nest_Common_V1_Role

  public init(subject: String, role: Nest_Common_V1_Role) {
    self.subject = subject
    self.role = role
  }

  /// The caller of the RPC this task is serving; set by `AuthServerInterceptor`, nil for
  /// RPCs that need no credentials (health).
  @TaskLocal public static var current: Principal?
}

extension Nest_Common_V1_Role {
  /// The `role` claim's spelling: `isv`, `distributor`, `customer`, `operator`, `service`.
  public var claim: String? {
    switch self {
    case .isv: "isv"
    case .distributor: "distributor"
    case .customer: "customer"
    case .operator: "operator"
    case .service: "service"
    case .unspecified, .unrecognized: nil
    }
  }

  public init?(claim: String) {
    guard let role = Self.allCases.first(where: { $0.claim == claim }) else { return nil }
    self = role
  }
}
