// Calling handlers directly in unit tests, as the server would, and what a client would see of
// a failed call.
public import GRPCCore
import NestAuth
public import NestProto
import NestServiceKit

/// The status code `body` failed with, as a client would receive it; nil if it succeeded.
public func code(of body: () async throws -> Void) async -> RPCError.Code? {
  do {
    try await body()
    return nil
  } catch let error as RPCError {
    return error.code
  } catch let error as any RPCErrorConvertible {
    return error.rpcErrorCode
  } catch {
    return .unknown
  }
}

/// A server context for a handler called directly.
public func handlerContext(_ method: MethodDescriptor) -> ServerContext {
  ServerContext(descriptor: method, remotePeer: "test", localPeer: "test", cancellation: .init())
}

/// Runs `body` (a handler of `method`, called directly, without a server) as the access
/// interceptor would: the method's declared roles and calling services checked, the caller
/// and the declaration set for the handler. For unit tests of handlers with fake peers.
public func calling<Result>(
  _ method: MethodDescriptor, as role: Nest_Common_V1_Role, _ subject: String,
  _ body: (ServerContext) async throws -> Result
) async throws -> Result {
  guard let declaration = NestAccessTable.methods[method.fullyQualifiedMethod] else {
    throw RPCError(code: .unimplemented, message: "\(method.fullyQualifiedMethod) declares no access")
  }
  let caller = Principal(subject: subject, role: role)
  try AccessInterceptor.check(caller, against: declaration)
  return try await Access.$current.withValue(Access(caller: caller, declaration: declaration)) {
    try await Principal.$current.withValue(caller) { try await body(handlerContext(method)) }
  }
}
