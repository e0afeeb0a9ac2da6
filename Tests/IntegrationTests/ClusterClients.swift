// Calling the services of a ServiceCluster as one party: a fresh connection with that
// party's token, and the generated client of the service.
import Foundation
import GRPCCore
import NestAuth
import NestProto
import NestProtoTesting
import NestTransport
import Testing

typealias CatalogClient = Nest_Catalog_V1_CatalogService.Client<NestClientTransport>
typealias EntitlementClient = Nest_Entitlement_V1_EntitlementService.Client<NestClientTransport>
typealias OrderClient = Nest_Order_V1_MarketplaceOrderService.Client<NestClientTransport>
typealias SettlementClient = Nest_Settlement_V1_SettlementService.Client<NestClientTransport>

/// One party's calls to one service.
struct Calls<Client> {
  var cluster: ServiceCluster
  var service: String
  var role: Nest_Common_V1_Role
  var subject: String
  var wrap: (GRPCClient<NestClientTransport>) -> Client

  func callAsFunction<R: Sendable>(_ body: (Client) async throws -> R) async throws -> R {
    let token = try await NestTokens(secret: self.cluster.secret).sign(subject: self.subject, role: self.role)
    return try await withGRPCClient(
      transport: NestClientTransport(.init(port: self.cluster.ports[self.service]!, peerName: "test")),
      interceptors: [BearerTokenClientInterceptor(token: token)]
    ) { client in try await body(self.wrap(client)) }
  }
}

func catalog(_ cluster: ServiceCluster, as role: Nest_Common_V1_Role, _ subject: String) -> Calls<CatalogClient> {
  Calls(cluster: cluster, service: "catalog", role: role, subject: subject) { CatalogClient(wrapping: $0) }
}

func entitlement(_ cluster: ServiceCluster, as role: Nest_Common_V1_Role, _ subject: String) -> Calls<EntitlementClient>
{
  Calls(cluster: cluster, service: "entitlement", role: role, subject: subject) { EntitlementClient(wrapping: $0) }
}

func orders(_ cluster: ServiceCluster, as role: Nest_Common_V1_Role, _ subject: String) -> Calls<OrderClient> {
  Calls(cluster: cluster, service: "order", role: role, subject: subject) { OrderClient(wrapping: $0) }
}

func settlement(_ cluster: ServiceCluster, as role: Nest_Common_V1_Role, _ subject: String) -> Calls<SettlementClient> {
  Calls(cluster: cluster, service: "settlement", role: role, subject: subject) { SettlementClient(wrapping: $0) }
}

func catalog<R: Sendable>(
  _ cluster: ServiceCluster, as role: Nest_Common_V1_Role, _ subject: String, _ body: (CatalogClient) async throws -> R
) async throws -> R { try await catalog(cluster, as: role, subject)(body) }

func entitlement<R: Sendable>(
  _ cluster: ServiceCluster, as role: Nest_Common_V1_Role, _ subject: String,
  _ body: (EntitlementClient) async throws -> R
) async throws -> R { try await entitlement(cluster, as: role, subject)(body) }

func orders<R: Sendable>(
  _ cluster: ServiceCluster, as role: Nest_Common_V1_Role, _ subject: String, _ body: (OrderClient) async throws -> R
) async throws -> R { try await orders(cluster, as: role, subject)(body) }

func settlement<R: Sendable>(
  _ cluster: ServiceCluster, as role: Nest_Common_V1_Role, _ subject: String,
  _ body: (SettlementClient) async throws -> R
) async throws -> R { try await settlement(cluster, as: role, subject)(body) }

/// The status code a call failed with; nil if it succeeded.
func status(_ body: () async throws -> Void) async -> RPCError.Code? {
  do {
    try await body()
    return nil
  } catch let error as RPCError {
    return error.code
  } catch {
    return .unknown
  }
}

func usd(_ amount: Int64) -> Nest_Common_V1_Money {
  .with {
    $0.currency = "USD"
    $0.amountMinor = amount
  }
}

func monthly(_ amount: Int64) -> Nest_Catalog_V1_Plan {
  .with {
    $0.planID = "monthly"
    $0.billingPeriod = .month
    $0.unitPrice = usd(amount)
  }
}
