// Who may call what and read what (nest/access/v1/access.proto), enforced in one place: the
// access interceptor checks every call against its method's declaration before any handler
// runs (credentials, role, calling service) and clears from every response each field the
// caller may not read. Handlers then apply the declared relation to the resource they load,
// through their service's ownership policy (`AccessControlled`).
public import GRPCCore
public import NestAuth
public import NestDomain
public import NestProto

public typealias Relation = Nest_Access_V1_Relation
public typealias MethodAccess = Nest_Access_V1_MethodAccess

/// The caller of the current RPC and what its method declares.
public struct Access: Sendable {
  public let caller: Principal
  public let declaration: MethodAccess

  public init(caller: Principal, declaration: MethodAccess) {
    self.caller = caller
    self.declaration = declaration
  }

  /// Set by the access interceptor for the handler it runs.
  @TaskLocal public static var current: Access?

  /// The current RPC's access; INTERNAL if a handler runs outside the interceptor, which
  /// is a wiring bug, never a caller's doing.
  public static func forCall() throws -> Access {
    guard let access = Self.current else {
      throw RPCError(code: .internalError, message: "the call was not checked against its access declaration")
    }
    return access
  }

  /// Operators and platform services are no party of any resource: where their role is
  /// admitted, they act on any.
  public var isPlatform: Bool { self.caller.role == .operator || self.caller.role == .service }

  /// The resource, if the caller may act on it as the method declares (or as `relation`,
  /// for a second resource the method acts on): any, for the platform; else the caller must
  /// hold the relation. A caller who may see it but not act on it is PERMISSION_DENIED; one
  /// who may not see it gets `notFound` (its existence does not leak).
  public func authorize<Resource: AccessControlled>(
    _ resource: Resource?, as relation: Relation? = nil, notFound: @autoclosure () -> DomainError
  ) throws(DomainError) -> Resource {
    guard let resource else { throw notFound() }
    let relation = relation ?? self.declaration.relation
    if self.isPlatform || relation == .unspecified || resource.holds(relation, for: self.caller) { return resource }
    if resource.holds(.viewer, for: self.caller) {
      throw DomainError(.permissionDenied, "only \(Self.phrase(relation, Resource.resourceName)) may do this")
    }
    throw notFound()
  }

  /// "the order's buyer", as the Who: lines of the .proto files say it.
  public static func phrase(_ relation: Relation, _ resource: String) -> String {
    switch relation {
    case .owner: "the \(resource)'s owner"
    case .buyer: "the \(resource)'s buyer"
    case .seller: "the \(resource)'s seller"
    case .party: "a party to the \(resource)"
    case .isv: "the \(resource)'s ISV"
    case .distributor: "the \(resource)'s distributor"
    case .customer: "the \(resource)'s customer"
    case .resourceOwner: "the \(resource)'s resource owner"
    case .viewer: "one who may see the \(resource)"
    case .unspecified, .unrecognized: "anyone"
    }
  }
}

/// A resource a service's ownership policy decides on: which relations a caller holds to it.
/// `.viewer` is whether the caller may see it at all.
public protocol AccessControlled: Sendable {
  /// As the declarations name it: "order", "instance", ...
  static var resourceName: String { get }
  func holds(_ relation: Relation, for caller: Principal) -> Bool
}

extension Nest_Common_V1_Party {
  /// Whether `caller` is this party (same role, same account).
  public func isCaller(_ caller: Principal) -> Bool {
    self.role == caller.role && self.accountID == caller.subject
  }
}

/// Enforces every method's declaration (NestAccessTable.methods) and every field's readers
/// (`redacted(forRole:)`). A method without a declaration is refused: nothing ships unchecked.
public struct AccessInterceptor: ServerInterceptor {
  private let tokens: NestTokens
  private let methods: [String: MethodAccess]

  public init(tokens: NestTokens, methods: [String: MethodAccess] = NestAccessTable.methods) {
    self.tokens = tokens
    self.methods = methods
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    guard let declaration = self.methods[context.descriptor.fullyQualifiedMethod] else {
      throw RPCError(code: .unimplemented, message: "\(context.descriptor.fullyQualifiedMethod) is not served here")
    }
    if declaration.open { return try await next(request, context) }
    let caller = try await self.authenticate(request.metadata)
    try Self.check(caller, against: declaration)
    let access = Access(caller: caller, declaration: declaration)
    var response = try await Access.$current.withValue(access) {
      try await Principal.$current.withValue(caller) { try await next(request, context) }
    }
    // What the caller may read of each response message.
    guard case .success(var contents) = response.accepted else { return response }
    let produce = contents.producer
    let role = caller.role.rawValue
    contents.producer = { writer in
      try await produce(RPCWriter(wrapping: RedactingWriter(base: writer, role: role)))
    }
    response.accepted = .success(contents)
    return response
  }

  private func authenticate(_ metadata: Metadata) async throws -> Principal {
    guard let header = metadata[stringValues: "authorization"].first(where: { _ in true }) else {
      throw RPCError(code: .unauthenticated, message: "missing authorization metadata (Bearer token)")
    }
    guard header.hasPrefix("Bearer "), case let token = header.dropFirst("Bearer ".count), !token.isEmpty else {
      throw RPCError(code: .unauthenticated, message: "authorization must be \"Bearer <token>\"")
    }
    do {
      return try await self.tokens.verify(String(token))
    } catch {
      throw RPCError(code: .unauthenticated, message: "invalid token: \(error)")
    }
  }

  /// The declaration's roles, and for role service its services.
  public static func check(_ caller: Principal, against declaration: MethodAccess) throws {
    guard declaration.roles.contains(caller.role) else {
      let allowed = declaration.roles.compactMap(\.claim).joined(separator: ", ")
      throw RPCError(
        code: .permissionDenied, message: "role \(caller.role.claim ?? "?") may not call this; allowed: \(allowed)")
    }
    if caller.role == .service && !declaration.services.contains(caller.subject) {
      throw RPCError(
        code: .permissionDenied,
        message:
          "service \(caller.subject) may not call this; allowed: \(declaration.services.joined(separator: ", "))")
    }
  }
}

/// Writes each response message as the caller's role may read it.
private struct RedactingWriter<Element: Sendable>: RPCWriterProtocol {
  let base: RPCWriter<Element>
  let role: Int32

  func redact(_ element: Element) -> Element {
    guard let message = element as? any NestMessage else { return element }
    return message.redacted(forRole: self.role) as? Element ?? element
  }

  func write(_ element: Element) async throws {
    try await self.base.write(self.redact(element))
  }

  func write(contentsOf elements: some Sequence<Element>) async throws {
    try await self.base.write(contentsOf: elements.map(self.redact))
  }
}
