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

  /// SQLite's name of a primary result code, as operators search logs for it.
  public static func name(_ code: ResultCode) -> String {
    let names: [Int32: String] = [
      1: "SQLITE_ERROR", 2: "SQLITE_INTERNAL", 3: "SQLITE_PERM", 4: "SQLITE_ABORT", 5: "SQLITE_BUSY",
      6: "SQLITE_LOCKED", 7: "SQLITE_NOMEM", 8: "SQLITE_READONLY", 9: "SQLITE_INTERRUPT", 10: "SQLITE_IOERR",
      11: "SQLITE_CORRUPT", 13: "SQLITE_FULL", 14: "SQLITE_CANTOPEN", 19: "SQLITE_CONSTRAINT", 22: "SQLITE_NOLFS",
      26: "SQLITE_NOTADB",
    ]
    return names[code.primaryResultCode.rawValue] ?? "SQLITE_\(code.primaryResultCode.rawValue)"
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
    let (status, cause) = RPCError.status(of: error)
    if let cause {
      self.logger.error("call failed", metadata: ["method": "\(method)", "cause": "\(cause)"])
    }
    return status
  }
}

extension RPCError {
  /// Any error as the status a caller gets, and the cause to log when the caller is not
  /// told it: an RPC's own status, a rule's DomainError, a storage failure (by what retrying
  /// can do), cancellation; anything else INTERNAL.
  public static func status(of error: any Error) -> (status: RPCError, cause: String?) {
    switch error {
    case let error as RPCError: return (error, nil)
    case let error as any RPCErrorConvertible: return (RPCError(error), nil)
    case is CancellationError: return (RPCError(code: .cancelled, message: "the call was cancelled"), nil)
    case let error as DatabaseError:
      let (code, reason) = StorageFailure.status(of: error)
      return (
        RPCError(code: code, message: reason),
        "storage: \(StorageFailure.name(error.resultCode)) (\(error.extendedResultCode.rawValue)): \(error.message ?? "") (\(error.sql ?? "no statement"))"
      )
    default:
      return (RPCError(code: .internalError, message: "internal error"), "\(error)")
    }
  }
}
