// The entitlement service: distribution authorizations, service instances and their slots,
// licenses, resource-permission requests. Statuses that time changes (an authorization or
// instance past its end, a permission request past its window) are computed when read.
import GRDB
import GRPCCore
import NestAuth
public import NestDomain
public import NestProto
public import NestServiceKit
public import NestWebhooks

public struct EntitlementService: Nest_Entitlement_V1_EntitlementService.SimpleServiceProtocol {
  typealias Authorization = Nest_Entitlement_V1_DistributionAuthorization
  typealias Instance = Nest_Entitlement_V1_ServiceInstance

  let store: EntitlementStore
  let catalog: any CatalogFacts
  let versions: VersionCache
  let signer: LicenseSigner
  let deployments: DeploymentDriver?
  let logonURLBase: String
  let clock: NestClock

  /// - `deployments`: woken after an instance is created (nil: deployment is driven elsewhere).
  /// - `logonURLBase`: fully managed instances get `<base>/<instance id>`.
  public init(
    store: EntitlementStore, catalog: any CatalogFacts, signer: LicenseSigner, deployments: DeploymentDriver?,
    logonURLBase: String = EntitlementService.defaultLogonURLBase, clock: NestClock = .system
  ) {
    self.store = store
    self.catalog = catalog
    self.versions = VersionCache(catalog: catalog)
    self.signer = signer
    self.deployments = deployments
    self.logonURLBase = logonURLBase
    self.clock = clock
  }

  public static let defaultLogonURLBase = "https://console.nest.local/instances"

  /// The term driver's timing from the settings `renewal.lead.ms`, `expiry.grace.ms` and
  /// `term.interval.ms`.
  public static func timing(_ settings: SettingsReader) async throws(ConfigurationError) -> TermDriver.Timing {
    let day = 24 * 3600 * 1000
    return TermDriver.Timing(
      lead: Int64(try await settings.int("renewal.lead.ms", default: 3 * day, in: 0...(366 * day))),
      grace: Int64(try await settings.int("expiry.grace.ms", default: 7 * day, in: 0...(366 * day))),
      interval: .milliseconds(try await settings.int("term.interval.ms", default: 60_000, in: 10...86_400_000)),
      notice: Int64(try await settings.int("expiry.notice.ms", default: 30 * day, in: 0...(366 * day))))
  }

  /// Calls to providers' fulfilment endpoints: the settings `fulfilment.timeout.ms`,
  /// `fulfilment.backoff.initial.ms`, `fulfilment.backoff.max.ms` and
  /// `fulfilment.retry.window.ms` (EndpointRetryPolicy).
  public static func fulfilmentPolicy(_ settings: SettingsReader) async throws(ConfigurationError)
    -> EndpointRetryPolicy
  {
    try await EndpointRetryPolicy.read("fulfilment", from: settings)
  }

  /// `upgrade.window`: when automatic upgrades run, "HH:MM-HH:MM" in UTC (default: all day).
  public static func upgradeWindow(_ settings: SettingsReader) async throws(ConfigurationError) -> (
    start: Int, end: Int
  ) {
    let text = try await settings.string("upgrade.window") ?? "00:00-24:00"
    do {
      return try UpgradeRules.window(text)
    } catch {
      throw ConfigurationError("upgrade.window: \(error.violations.first?.description ?? error.message)")
    }
  }

  /// `fulfilment.private.addresses`: deny (the default) or allow endpoints on loopback,
  /// private and link-local addresses.
  public static func addressGuard(_ settings: SettingsReader) async throws(ConfigurationError) -> AddressGuard {
    try await AddressGuard.read("fulfilment", from: settings)
  }

  /// A list RPC: the filter narrowed to what the caller may see, one page read, each item
  /// presented as of now.
  func page<Filter: Sendable, Item: Sendable>(
    _ request: Filter, _ page: Nest_Common_V1_PageRequest?,
    scope: (inout Filter, Principal) -> Void,
    fetch: @escaping @Sendable (Filter, PageQuery, Int64, Database) throws -> (items: [Item], nextPageToken: String),
    present: (Item, Int64) -> Item
  ) async throws -> (items: [Item], page: Nest_Common_V1_PageResponse) {
    let access = try Access.forCall()
    let query = try PageQuery(page)
    var filter = request
    scope(&filter, access.caller)
    let now = self.clock.nowUnixMs()
    let scoped = filter
    let result = try await self.store.database.read { try fetch(scoped, query, now, $0) }
    return (result.items.map { present($0, now) }, .with { $0.nextPageToken = result.nextPageToken })
  }

  /// Entitlement as `NestService` runs it: its peers are the catalog and marketplace-order
  /// (auto-renew); the deployment and term drivers run beside the server. Settings:
  /// `--logon-url-base`, `--renewal-lead-ms` (default 3 days), `--expiry-grace-ms` (7 days),
  /// `--term-interval-ms` (how often terms are looked at, 60 s), `--expiry-notice-ms` (30 days:
  /// how long before an end its parties are told).
  public static let definition = ServiceDefinition(
    name: .entitlement, peers: [.catalog, .order, .events], migrations: EntitlementStore.migrations
  ) { environment in
    let store = EntitlementStore(database: environment.database)
    let catalog = CatalogClientFacts(client: try environment.peers.catalog())
    let fulfilment = FulfilmentDriver(
      store: store, catalog: catalog, addressGuard: try await Self.addressGuard(environment.configuration.settings),
      policy: try await Self.fulfilmentPolicy(environment.configuration.settings), logger: environment.logger,
      clock: environment.clock)
    let deployments = DeploymentDriver(
      store: store, fulfilment: fulfilment, logger: environment.logger, clock: environment.clock)
    let timing = try await Self.timing(environment.configuration.settings)
    let terms = TermDriver(
      store: store, placer: RPCRenewalPlacer(orders: try environment.peers.orders()), timing: timing,
      logger: environment.logger, clock: environment.clock)
    let service = EntitlementService(
      store: store, catalog: catalog, signer: try store.signer(),
      deployments: deployments,
      logonURLBase: try await environment.configuration.settings.string("logon.url.base") ?? Self.defaultLogonURLBase,
      clock: environment.clock)
    let settings = environment.configuration.settings
    let upgrades = UpgradeDriver(
      store: store, catalog: catalog, signer: service.signer, fulfilment: fulfilment,
      interval: .milliseconds(try await settings.int("upgrade.interval.ms", default: 60_000, in: 10...86_400_000)),
      window: try await Self.upgradeWindow(settings), logger: environment.logger, clock: environment.clock)
    return ServiceParts(rpcServices: [service], background: [deployments, terms, fulfilment, upgrades])
  }
}
