// Field-level errors (docs/design.md §3: Status.violations) through GRPCCore, whose RPCError
// has no place for them: they ride in the error's metadata under one binary key, and the
// transport moves them into the wire Status's `violations` (and back on the client).
public import GRPCCore
import NestProto

/// Which field of a request was refused, and why.
public struct FieldViolation: Hashable, Sendable, CustomStringConvertible {
  /// The field's path in the request, e.g. `plans[0].unit_price.currency`.
  public var field: String
  public var description: String

  public init(field: String, description: String) {
    self.field = field
    self.description = description
  }
}

extension Metadata {
  /// Where violations travel between a handler and the transport; never sent as metadata.
  static let violationsKey = "nest-field-violations-bin"

  /// Takes the violations out of these (trailing) metadata.
  mutating func removeViolations() -> [Nest_Wire_V1_FieldViolation] {
    guard let encoded = self[binaryValues: Self.violationsKey].first(where: { _ in true }),
      let status = try? Nest_Wire_V1_Status(serializedBytes: encoded)
    else { return [] }
    self.removeAllValues(forKey: Self.violationsKey)
    return status.violations
  }

  mutating func addViolations(_ violations: [Nest_Wire_V1_FieldViolation]) {
    guard !violations.isEmpty,
      let encoded = try? Nest_Wire_V1_Status.with({ $0.violations = violations }).serializedBytes()
    else { return }
    self.addBinary(encoded, forKey: Self.violationsKey)
  }
}

extension RPCError {
  /// An INVALID_ARGUMENT (or other) error that names each refused field.
  public init(code: RPCError.Code = .invalidArgument, message: String, violations: [FieldViolation]) {
    var metadata = Metadata()
    metadata.addViolations(
      violations.map { v in
        .with {
          $0.field = v.field; $0.description = v.description
        }
      })
    self.init(code: code, message: message, metadata: metadata)
  }

  /// The field violations the server sent with this error.
  public var fieldViolations: [FieldViolation] {
    var metadata = self.metadata
    return metadata.removeViolations().map { FieldViolation(field: $0.field, description: $0.description) }
  }
}
