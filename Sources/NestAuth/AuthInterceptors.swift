// Bearer tokens on the wire: the server checks `authorization: Bearer <token>` on every
// RPC but those that need no credentials, and gives handlers the caller as
// `Principal.current`; the client attaches its token to every call.
public import GRPCCore

/// Missing, forged, expired or malformed credentials: UNAUTHENTICATED, before any handler runs.
public struct AuthServerInterceptor: ServerInterceptor {
  private let tokens: NestTokens
  private let openServices: Set<String>

  /// `openServices`: fully qualified services callable without a token.
  public init(tokens: NestTokens, openServices: Set<String> = ["nest.health.v1.Health"]) {
    self.tokens = tokens
    self.openServices = openServices
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    if self.openServices.contains(context.descriptor.service.fullyQualifiedService) {
      return try await next(request, context)
    }
    guard let header = request.metadata[stringValues: "authorization"].first(where: { _ in true }) else {
      throw RPCError(code: .unauthenticated, message: "missing authorization metadata (Bearer token)")
    }
    guard header.hasPrefix("Bearer "), case let token = header.dropFirst("Bearer ".count), !token.isEmpty else {
      throw RPCError(code: .unauthenticated, message: "authorization must be \"Bearer <token>\"")
    }
    let principal: Principal
    do {
      principal = try await self.tokens.verify(String(token))
    } catch {
      throw RPCError(code: .unauthenticated, message: "invalid token: \(error)")
    }
    return try await Principal.$current.withValue(principal) {
      try await next(request, context)
    }
  }
}

/// Sends `authorization: Bearer <token>` with every call: a fixed token, or whichever token
/// `source` gives at the call (a service's renewed token, the caller of the current scope).
public struct BearerTokenClientInterceptor: ClientInterceptor {
  private let source: @Sendable () async throws -> String?

  public init(token: String) {
    self.source = { token }
  }

  /// `source` is asked at each call; nil sends no token.
  public init(_ source: @escaping @Sendable () async throws -> String?) {
    self.source = source
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>,
    context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    guard let token = try await self.source() else { return try await next(request, context) }
    var request = request
    request.metadata.replaceOrAddString("Bearer \(token)", forKey: "authorization")
    return try await next(request, context)
  }
}
