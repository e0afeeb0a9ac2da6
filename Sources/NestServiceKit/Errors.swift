// How failures reach a caller, in one place: a rule's DomainError becomes its status code
// with the field violations on the wire; a storage failure becomes the code that says
// whether retrying can help (RESOURCE_EXHAUSTED, UNAVAILABLE) or not (INTERNAL), with a
// short reason for the caller and the cause in the service's log; anything else unexpected
// is INTERNAL, with no internals in the message.
import Foundation
public import GRDB
public import GRPCCore
public import Logging
public import NestDomain
import NestTransport

extension DomainError.Code {
  /// The gRPC status code of each kind of refusal.
  public var rpcCode: RPCError.Code {
    switch self {
    case .invalidArgument: .invalidArgument
    case .notFound: .notFound
    case .alreadyExists: .alreadyExists
    case .failedPrecondition: .failedPrecondition
    case .permissionDenied: .permissionDenied
    case .aborted: .aborted
    case .resourceExhausted: .resourceExhausted
    case .outOfRange: .outOfRange
    default: .unknown
    }
  }
}

extension DomainError: RPCErrorConvertible {
  public var rpcErrorCode: RPCError.Code { self.code.rpcCode }
  public var rpcErrorMessage: String { self.message }
  public var rpcErrorMetadata: Metadata {
    RPCError(
      code: self.code.rpcCode, message: self.message,
      violations: self.violations.map { FieldViolation(field: $0.field, description: $0.description) }
    ).metadata
  }
}

/// A SQLite failure as its callers should see it.
public enum StorageFailure {
  /// The status for `error`, and whether it is a storage failure at all.
  public static func status(of error: DatabaseError) -> (code: RPCError.Code, reason: String) {
    switch error.resultCode {
    case .SQLITE_FULL: (.resourceExhausted, "the service's storage is full")
    case .SQLITE_BUSY, .SQLITE_LOCKED: (.unavailable, "the service's database is busy; retry")
    case .SQLITE_IOERR, .SQLITE_CANTOPEN, .SQLITE_READONLY, .SQLITE_NOLFS:
      (.unavailable, "the service cannot reach its storage; retry")
    default: (.internalError, "internal error (storage)")
    }
  }
}

/// Turns every error a handler throws into the status a caller should see, logging what the
/// caller is not told.
public struct ErrorMappingInterceptor: ServerInterceptor {
  private let logger: Logger

  public init(logger: Logger) {
    self.logger = logger
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    do {
      return try await next(request, context)
    } catch {
      throw self.map(error, method: context.descriptor.fullyQualifiedMethod)
    }
  }

  public func map(_ error: any Error, method: String) -> RPCError {
    switch error {
    case let error as RPCError: return error
    case let error as any RPCErrorConvertible: return RPCError(error)
    case is CancellationError: return RPCError(code: .cancelled, message: "the call was cancelled")
    case let error as DatabaseError:
      let (code, reason) = StorageFailure.status(of: error)
      self.logger.error(
        "storage failure",
        metadata: [
          "method": "\(method)", "sqlite": "\(error.extendedResultCode)", "error": "\(error.message ?? "")",
          "sql": "\(error.sql ?? "")",
        ])
      return RPCError(code: code, message: reason)
    default:
      self.logger.error("handler failed", metadata: ["method": "\(method)", "error": "\(error)"])
      return RPCError(code: .internalError, message: "internal error")
    }
  }
}
