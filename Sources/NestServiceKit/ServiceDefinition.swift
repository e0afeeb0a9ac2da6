// What a service is, apart from how it runs: its name, the peers it calls, its schema
// migrations, and how it builds its RPC services and background work from its environment
// (database, peer clients, logger, clock, settings). `NestService` runs one; each service
// library declares its own (`CatalogService.definition`, ...).
public import GRDB
public import GRPCCore
public import Logging
public import NestDomain
public import NestProto
public import ServiceLifecycle

public struct ServiceDefinition: Sendable {
  public var name: NestServiceName
  /// The services it calls.
  public var peers: [NestServiceName]
  /// Its schema, as versioned migrations (the kit's own come first).
  public var migrations: @Sendable (inout DatabaseMigrator) -> Void
  /// Its RPC services and background work, built once at start.
  public var build: @Sendable (ServiceEnvironment) async throws -> ServiceParts

  public init(
    name: NestServiceName, peers: [NestServiceName],
    migrations: @escaping @Sendable (inout DatabaseMigrator) -> Void,
    build: @escaping @Sendable (ServiceEnvironment) async throws -> ServiceParts
  ) {
    self.name = name
    self.peers = peers
    self.migrations = migrations
    self.build = build
  }
}

/// What a running service is made of.
public struct ServiceParts: Sendable {
  public var rpcServices: [any RegistrableRPCService]
  /// Long-running work (an outbox dispatcher, a deployment driver): started before the
  /// server, stopped after it.
  public var background: [any Service]

  public init(rpcServices: [any RegistrableRPCService], background: [any Service] = []) {
    self.rpcServices = rpcServices
    self.background = background
  }
}

/// What a service is built with.
public struct ServiceEnvironment: Sendable {
  public let configuration: ServiceConfiguration
  public let database: NestDatabase
  public let peers: PeerClients
  public let logger: Logger
  public let clock: NestClock

  public init(
    configuration: ServiceConfiguration, database: NestDatabase, peers: PeerClients, logger: Logger, clock: NestClock
  ) {
    self.configuration = configuration
    self.database = database
    self.peers = peers
    self.logger = logger
    self.clock = clock
  }
}

/// Clients of the peers a service declared, whatever transport reaches them. Each call
/// carries the service's own short-lived token and the platform's peer-call policy
/// (`PeerCallPolicy`).
public struct PeerClients: Sendable {
  var catalogClient: (any Nest_Catalog_V1_CatalogService.ClientProtocol)?
  var entitlementClient: (any Nest_Entitlement_V1_EntitlementService.ClientProtocol)?
  var ordersClient: (any Nest_Order_V1_MarketplaceOrderService.ClientProtocol)?
  var settlementClient: (any Nest_Settlement_V1_SettlementService.ClientProtocol)?
  var eventsClient: (any Nest_Events_V1_EventsService.ClientProtocol)?

  public init() {}

  public mutating func add<Transport: ClientTransport>(_ peer: NestServiceName, _ client: GRPCClient<Transport>) {
    switch peer {
    case .catalog: self.catalogClient = Nest_Catalog_V1_CatalogService.Client(wrapping: client)
    case .entitlement: self.entitlementClient = Nest_Entitlement_V1_EntitlementService.Client(wrapping: client)
    case .order: self.ordersClient = Nest_Order_V1_MarketplaceOrderService.Client(wrapping: client)
    case .settlement: self.settlementClient = Nest_Settlement_V1_SettlementService.Client(wrapping: client)
    case .events: self.eventsClient = Nest_Events_V1_EventsService.Client(wrapping: client)
    }
  }

  public mutating func add(_ peer: NestServiceName, _ clients: any ServiceClientSet) {
    switch peer {
    case .catalog: self.catalogClient = clients.catalog
    case .entitlement: self.entitlementClient = clients.entitlement
    case .order: self.ordersClient = clients.orders
    case .settlement: self.settlementClient = clients.settlement
    case .events: self.eventsClient = clients.events
    }
  }

  private func require<Client>(_ client: Client?, _ peer: NestServiceName) throws -> Client {
    guard let client else {
      throw RPCError(code: .internalError, message: "\(peer.identity) is not a declared peer of this service")
    }
    return client
  }

  public func catalog() throws -> any Nest_Catalog_V1_CatalogService.ClientProtocol {
    try self.require(self.catalogClient, .catalog)
  }

  public func entitlement() throws -> any Nest_Entitlement_V1_EntitlementService.ClientProtocol {
    try self.require(self.entitlementClient, .entitlement)
  }

  public func orders() throws -> any Nest_Order_V1_MarketplaceOrderService.ClientProtocol {
    try self.require(self.ordersClient, .order)
  }

  public func settlement() throws -> any Nest_Settlement_V1_SettlementService.ClientProtocol {
    try self.require(self.settlementClient, .settlement)
  }

  public func events() throws -> any Nest_Events_V1_EventsService.ClientProtocol {
    try self.require(self.eventsClient, .events)
  }
}
