// A business rule said no: the status code it maps to, a message, and which fields. Pure
// model code throws it; the RPC layer turns it into an RPCError with Status.violations.
public import GRPCCore
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
