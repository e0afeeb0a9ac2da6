// The catalog service: services, versions, deployment packages, parameter sets, products
// and plans. Its definition says what it is made of (its peer entitlement, its schema); the
// handlers, split by aggregate, read: validate, load, decide (Model), store, respond.
import GRDB
import GRPCCore
public import NestDomain
public import NestProto
public import NestServiceKit

public struct CatalogService: Nest_Catalog_V1_CatalogService.SimpleServiceProtocol {
  let store: CatalogStore
  let distribution: any DistributionChecking
  let clock: NestClock

  public init(store: CatalogStore, distribution: any DistributionChecking, clock: NestClock = .system) {
    self.store = store
    self.distribution = distribution
    self.clock = clock
  }

  /// The catalog as `NestService` runs it.
  public static let definition = ServiceDefinition(
    name: .catalog, peers: [.entitlement, .events], migrations: CatalogStore.migrations
  ) { environment in
    let service = CatalogService(
      store: CatalogStore(database: environment.database),
      distribution: EntitlementDistributionChecker(client: try environment.peers.entitlement()),
      clock: environment.clock)
    return ServiceParts(rpcServices: [service])
  }
}
