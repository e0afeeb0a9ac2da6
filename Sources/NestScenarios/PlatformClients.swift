// One way to call the platform as any party, whatever runs it: the services in-process
// (NestTestKit), as local processes or remote (nestctl): a client per service, shared, whose
// calls carry the token of the caller the surrounding `as` scope names.
public import GRPCCore
import NIOConcurrencyHelpers
import NestAuth
public import NestProto
public import NestServiceKit

/// Calls the platform's services as a given party.
public protocol PlatformClients: Sendable {
  /// A bearer token for `role` and `subject`.
  func token(_ role: Nest_Common_V1_Role, _ subject: String) async throws -> String
  /// Runs `body` with a client of `service` whose calls carry `token`.
  func withClient<Result: Sendable>(
    _ service: NestServiceName, token: String, _ body: (any ServiceClients) async throws -> Result
  ) async throws -> Result
}

/// The generated clients of one connection: use the one of the service it reaches.
public typealias ServiceClients = ServiceClientSet

extension PlatformClients {
  public func catalog<Result: Sendable>(
    as role: Nest_Common_V1_Role, _ subject: String,
    _ body: (any Nest_Catalog_V1_CatalogService.ClientProtocol) async throws -> Result
  ) async throws -> Result {
    try await self.withClient(.catalog, token: try await self.token(role, subject)) { try await body($0.catalog) }
  }

  public func entitlement<Result: Sendable>(
    as role: Nest_Common_V1_Role, _ subject: String,
    _ body: (any Nest_Entitlement_V1_EntitlementService.ClientProtocol) async throws -> Result
  ) async throws -> Result {
    try await self.withClient(.entitlement, token: try await self.token(role, subject)) {
      try await body($0.entitlement)
    }
  }

  public func orders<Result: Sendable>(
    as role: Nest_Common_V1_Role, _ subject: String,
    _ body: (any Nest_Order_V1_MarketplaceOrderService.ClientProtocol) async throws -> Result
  ) async throws -> Result {
    try await self.withClient(.order, token: try await self.token(role, subject)) { try await body($0.orders) }
  }

  public func settlement<Result: Sendable>(
    as role: Nest_Common_V1_Role, _ subject: String,
    _ body: (any Nest_Settlement_V1_SettlementService.ClientProtocol) async throws -> Result
  ) async throws -> Result {
    try await self.withClient(.settlement, token: try await self.token(role, subject)) {
      try await body($0.settlement)
    }
  }

  public func events<Result: Sendable>(
    as role: Nest_Common_V1_Role, _ subject: String,
    _ body: (any Nest_Events_V1_EventsService.ClientProtocol) async throws -> Result
  ) async throws -> Result {
    try await self.withClient(.events, token: try await self.token(role, subject)) { try await body($0.events) }
  }

  /// Every event of the party's feed, from the oldest kept, page by page.
  public func feed(as role: Nest_Common_V1_Role, _ subject: String, pageSize: Int32 = 0) async throws
    -> [Nest_Events_V1_Event]
  {
    try await self.events(as: role, subject) { client in
      var events: [Nest_Events_V1_Event] = []
      var cursor = ""
      while true {
        let page = try await client.listEvents(
          .with {
            $0.after = cursor
            $0.pageSize = pageSize
          })
        guard !page.events.isEmpty else { return events }
        events += page.events
        cursor = page.cursor
      }
    }
  }
}

/// Shared clients, one per service, kept connected until `close()`; each call carries the
/// token of the `withClient` scope it is made in.
public final class SharedConnections: Sendable {
  @TaskLocal static var token: String?

  private let clients = NIOLockedValueBox<[NestServiceName: any ServiceClients]>([:])
  private let runs = NIOLockedValueBox<[Task<Void, Never>]>([])
  private let stops = NIOLockedValueBox<[@Sendable () -> Void]>([])

  public init() {}

  /// Connects `service` through `transport` (its connections run until `close()`).
  public func add<Transport: ClientTransport>(_ service: NestServiceName, transport: Transport) {
    self.add(service, clients: TypedClients(GRPCClient(transport: transport, interceptors: [Self.interceptor])))
  }

  /// Connects `service` at `address` (wire protocol v1, or gRPC for `grpc://`).
  public func add(_ service: NestServiceName, address: ServiceAddress, peerName: String) throws {
    let (clients, _) = try PeerTransport.client(
      address, peerName: peerName, serviceConfig: ServiceConfig(), interceptors: [Self.interceptor])
    self.add(service, clients: clients)
  }

  /// Sends the token of the enclosing `withClient`.
  static let interceptor = BearerTokenClientInterceptor { SharedConnections.token }

  private func add(_ service: NestServiceName, clients: any ServiceClientSet) {
    self.clients.withLockedValue { $0[service] = clients }
    let run = Task {
      do { try await clients.runConnections() } catch {}  // ended by close(); errors surface on calls
    }
    self.runs.withLockedValue { $0.append(run) }
    self.stops.withLockedValue { $0.append { clients.beginGracefulShutdown() } }
  }

  public func withClient<Result: Sendable>(
    _ service: NestServiceName, token: String, _ body: (any ServiceClients) async throws -> Result
  ) async throws -> Result {
    guard let clients = self.clients.withLockedValue({ $0[service] }) else {
      throw RPCError(code: .unavailable, message: "not connected to \(service.identity)")
    }
    return try await Self.$token.withValue(token) { try await body(clients) }
  }

  /// Shuts every connection down and waits for them.
  public func close() async {
    for stop in self.stops.withLockedValue({ $0 }) { stop() }
    for run in self.runs.withLockedValue({ $0 }) { await run.value }
  }
}
