// A business rule said no: the status code it maps to, a message, and which fields. Pure
// model code throws it; the RPC layer turns it into an RPCError with Status.violations.
public import GRPCCore
public import NestProto
public import NestTransport

public struct DomainError: Error, Hashable, Sendable, CustomStringConvertible {
  public var code: RPCError.Code
  public var message: String
  public var violations: [FieldViolation]

  public init(_ code: RPCError.Code, _ message: String, violations: [FieldViolation] = []) {
    self.code = code
    self.message = message
    self.violations = violations
  }

  /// INVALID_ARGUMENT naming each bad field.
  public static func invalid(_ violations: [FieldViolation]) -> DomainError {
    DomainError(
      .invalidArgument,
      violations.count == 1
        ? "invalid \(violations[0].field): \(violations[0].description)"
        : "\(violations.count) invalid fields", violations: violations)
  }

  public var description: String { "\(self.code): \(self.message)" }
}

extension DomainError: RPCErrorConvertible {
  public var rpcErrorCode: RPCError.Code { self.code }
  public var rpcErrorMessage: String { self.message }
  public var rpcErrorMetadata: Metadata {
    RPCError(code: self.code, message: self.message, violations: self.violations).metadata
  }
}

extension DomainError {
  /// INVALID_ARGUMENT naming every (field, value) pair whose value is empty; nothing if none is.
  public static func requireNonEmpty(_ fields: (String, String)...) throws(DomainError) {
    let missing = fields.filter { $0.1.isEmpty }.map { FieldViolation(field: $0.0, description: "is required") }
    guard missing.isEmpty else { throw .invalid(missing) }
  }

  /// NOT_FOUND for `what` `id`, naming the request field that held the id.
  public static func notFound(_ what: String, _ id: String, field: String) -> DomainError {
    DomainError(.notFound, "no \(what) \(id)", violations: [.init(field: field, description: "not found")])
  }
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
