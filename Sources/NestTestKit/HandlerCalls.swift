// Calling a service's handlers directly, without a server: as the auth interceptor would,
// the caller is set for the task; errors become the status code a client would see.
public import GRPCCore
import NestAuth
public import NestProto

/// A server context for a handler called directly.
public let handlerContext = ServerContext(
  descriptor: MethodDescriptor(fullyQualifiedService: "nest.test", method: "Test"), remotePeer: "test",
  localPeer: "test", cancellation: .init())

/// Runs `body` as the authenticated caller `subject` with `role`.
public func acting<R>(_ role: Nest_Common_V1_Role, _ subject: String, _ body: () async throws -> R) async throws -> R {
  try await Principal.$current.withValue(Principal(subject: subject, role: role)) { try await body() }
}

/// The status code `body` failed with, as a client would receive it; nil if it succeeded.
public func code(of body: () async throws -> Void) async -> RPCError.Code? {
  do {
    try await body()
    return nil
  } catch let error as any RPCErrorConvertible {
    return error.rpcErrorCode
  } catch let error as RPCError {
    return error.code
  } catch {
    return .unknown
  }
}
