// A business rule said no: what kind of no, a message for the caller, and which request
// fields. The services' rules throw it; it knows nothing of RPC status codes. The service
// kit maps each code to its gRPC status in one place (DomainError+RPC.swift).

public struct DomainError: Error, Hashable, Sendable, CustomStringConvertible {
  /// What kind of refusal: a struct over a private enum, so that kinds can be added.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Kind: String, Hashable, Sendable {
      case invalidArgument = "invalid argument"
      case notFound = "not found"
      case alreadyExists = "already exists"
      case failedPrecondition = "failed precondition"
      case permissionDenied = "permission denied"
      case aborted
      case resourceExhausted = "resource exhausted"
      case outOfRange = "out of range"
    }

    private let kind: Kind

    /// A request field is missing or malformed.
    public static let invalidArgument = Code(kind: .invalidArgument)
    /// The resource does not exist, or the caller may not know that it does.
    public static let notFound = Code(kind: .notFound)
    /// It was already done differently (an idempotency key reused for another request).
    public static let alreadyExists = Code(kind: .alreadyExists)
    /// The resource is not in a state that allows it.
    public static let failedPrecondition = Code(kind: .failedPrecondition)
    /// The caller may see the resource but not do this to it.
    public static let permissionDenied = Code(kind: .permissionDenied)
    /// A concurrent change won: try again from a fresh read.
    public static let aborted = Code(kind: .aborted)
    /// A limit is reached.
    public static let resourceExhausted = Code(kind: .resourceExhausted)
    /// A value is past what the rules can represent.
    public static let outOfRange = Code(kind: .outOfRange)

    public var description: String { self.kind.rawValue }
  }

  /// One bad request field and why.
  public struct Violation: Hashable, Sendable {
    public var field: String
    public var description: String

    public init(field: String, description: String) {
      self.field = field
      self.description = description
    }
  }

  public var code: Code
  public var message: String
  public var violations: [Violation]

  public init(_ code: Code, _ message: String, violations: [Violation] = []) {
    self.code = code
    self.message = message
    self.violations = violations
  }

  public var description: String { "\(self.code): \(self.message)" }
}

extension DomainError {
  /// INVALID_ARGUMENT naming each bad field.
  public static func invalid(_ violations: [Violation]) -> DomainError {
    DomainError(
      .invalidArgument,
      violations.count == 1
        ? "invalid \(violations[0].field): \(violations[0].description)"
        : "\(violations.count) invalid fields", violations: violations)
  }

  /// INVALID_ARGUMENT for one field.
  public static func invalid(_ field: String, _ description: String) -> DomainError {
    .invalid([Violation(field: field, description: description)])
  }

  /// INVALID_ARGUMENT naming every (field, value) pair whose value is empty; nothing if none is.
  public static func requireNonEmpty(_ fields: (String, String)...) throws(DomainError) {
    let missing = fields.filter { $0.1.isEmpty }.map { Violation(field: $0.0, description: "is required") }
    guard missing.isEmpty else { throw .invalid(missing) }
  }

  /// INVALID_ARGUMENT when `text` is longer than `limit` bytes of UTF-8.
  public static func requireAtMost(_ limit: Int, bytes text: String, field: String) throws(DomainError) {
    guard text.utf8.count <= limit else { throw .invalid(field, "must be at most \(limit) bytes") }
  }

  /// NOT_FOUND for `what` `id`, naming the request field that held the id.
  public static func notFound(_ what: String, _ id: String, field: String) -> DomainError {
    DomainError(.notFound, "no \(what) \(id)", violations: [Violation(field: field, description: "not found")])
  }

  /// INVALID_ARGUMENT when a [after, before) range is reversed.
  public static func checkRange(_ after: Int64, _ before: Int64, field: String) throws(DomainError) {
    if after > 0 && before > 0 && before <= after {
      throw .invalid("\(field)_before_unix_ms", "must be after \(field)_after_unix_ms")
    }
  }
}
