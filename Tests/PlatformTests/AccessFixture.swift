// One sale of every kind of resource the access rules speak of, made by party 1 of each role
// (isv-1 owns A; dist-1 is authorized and owns B and its product; cust-1 bought B, has its
// instance and asked dist-1 for a permission; isv-1 issued dist-1 a statement), and the
// callers that test them: those parties, strangers of each role, an operator, and every
// platform service identity (and one that is none).
import Foundation
import GRPCCore
import NestAuth
import NestDomain
import NestProto
import NestServiceKit
import NestTestKit

/// A caller: a role and a subject.
struct Caller: Hashable, Sendable, CustomStringConvertible {
  var role: Nest_Common_V1_Role
  var subject: String

  static let isv1 = Caller(role: .isv, subject: "isv-1")
  static let isv2 = Caller(role: .isv, subject: "isv-2")
  static let dist1 = Caller(role: .distributor, subject: "dist-1")
  static let dist2 = Caller(role: .distributor, subject: "dist-2")
  static let cust1 = Caller(role: .customer, subject: "cust-1")
  static let cust2 = Caller(role: .customer, subject: "cust-2")
  static let op = Caller(role: .operator, subject: "op-1")
  static func service(_ name: String) -> Caller { Caller(role: .service, subject: name) }

  /// Everyone the matrix calls as: each party role twice (the owner of the fixture's
  /// resources and a stranger), an operator, and role service as each platform service and
  /// as a name that is none of them.
  static let all: [Caller] =
    [.isv1, .isv2, .dist1, .dist2, .cust1, .cust2, .op]
    + ["catalog", "entitlement", "marketplace-order", "settlement", "metering", "intruder"].map(Caller.service)

  var description: String { "\(self.role.claim ?? "?") \(self.subject)" }
}

/// A resource of the fixture, by whom it holds each relation to: the test's own account of
/// the fixture, independent of any service's policy.
enum FixtureResource: Sendable {
  /// The method names no resource of someone else's (creating one, or a list scoped to the
  /// caller).
  case none
  case serviceA, serviceB, productB, authorization, instance, order, permissionRequest, statement, webhook
  /// Party 1's customer account.
  case customerAccount

  /// The callers (of party roles) holding `relation` to it.
  func holders(_ relation: Relation) -> Set<Caller> {
    switch (self, relation) {
    case (.none, _), (_, .unspecified): return Set(Caller.all)
    case (.serviceA, .owner): return [.isv1]
    case (.serviceB, .owner), (.productB, .owner): return [.dist1]
    // Published catalog entries are public.
    case (.serviceA, .viewer), (.serviceB, .viewer), (.productB, .viewer): return Set(Caller.all)
    case (.authorization, .isv): return [.isv1]
    case (.authorization, .party): return [.isv1, .dist1]
    case (.instance, .party): return [.isv1, .dist1, .cust1]
    case (.instance, .customer): return [.cust1]
    case (.instance, .resourceOwner): return [.dist1]  // scenario 2: the distributor's resources
    case (.order, .buyer): return [.cust1]
    case (.order, .seller): return [.dist1]
    case (.order, .party): return [.cust1, .dist1]
    case (.permissionRequest, .resourceOwner): return [.dist1]
    case (.permissionRequest, .party): return [.dist1, .cust1]
    case (.statement, .isv): return [.isv1]
    case (.statement, .distributor): return [.dist1]
    case (.statement, .party): return [.isv1, .dist1]
    case (.customerAccount, .owner): return [.cust1]
    case (.webhook, .owner): return [.dist1]
    default: return []
    }
  }
}

/// The fixture: a scenario-2 sale (PRIVATE A listed by isv-1, FULLY_MANAGED B by dist-1),
/// paid and fulfilled, a pending permission request, an ISSUED statement, dist-1's webhook
/// and an event of dist-1's feed.
struct AccessFixture: Sendable {
  let platform: NestTestPlatform
  let a: Nest_Catalog_V1_Service
  let b: Nest_Catalog_V1_Service
  let authorization: Nest_Entitlement_V1_DistributionAuthorization
  let order: Nest_Order_V1_Order
  let instance: Nest_Entitlement_V1_ServiceInstance
  let permissionRequest: Nest_Entitlement_V1_PermissionRequest
  let statement: Nest_Settlement_V1_Statement
  let webhook: Nest_Events_V1_Webhook
  let event: Nest_Events_V1_Event

  static let kind = ScenarioKind(name: "scenario 2", a: .private, aListed: true, b: .fullyManaged)

  static func make() async throws -> AccessFixture {
    let platform = try await NestTestPlatform.start()
    let marketplace = platform.marketplace
    let setup = try await marketplace.setUp(
      Self.kind, parties: ScenarioParties(isv: "isv-1", distributor: "dist-1", customer: "cust-1"))
    let paid = try await marketplace.buy("cust-1", product: setup.productID)
    let order = try await marketplace.waitForOrder(paid.id).order ?? .init()
    let instance = try await platform.entitlement(as: .customer, "cust-1") {
      try await $0.getServiceInstance(.with { $0.key = .orderID(order.id) }).instance ?? .init()
    }
    let permissionRequest = try await marketplace.requestPermission("cust-1", instance: instance.id)
    let statement = try await platform.settlement(as: .isv, "isv-1") {
      try await $0.issueStatement(
        .with {
          $0.distributorID = "dist-1"
          $0.periodEndUnixMs = NestClock.system.nowUnixMs()
        }
      ).statement ?? .init()
    }
    let webhook = try await Self.webhook(platform)
    var event: Nest_Events_V1_Event? = nil
    _ = try await eventually {
      event = try await platform.events(as: .distributor, "dist-1") { try await $0.listEvents(.init()).events.first }
      return event != nil
    }
    return AccessFixture(
      platform: platform, a: setup.a, b: setup.b ?? .init(), authorization: setup.authorization ?? .init(),
      order: order, instance: instance, permissionRequest: permissionRequest, statement: statement, webhook: webhook,
      event: event ?? .init())
  }

  /// A new webhook of dist-1's.
  static func webhook(_ platform: NestTestPlatform) async throws -> Nest_Events_V1_Webhook {
    try await platform.events(as: .distributor, "dist-1") {
      try await $0.createWebhook(.with { $0.url = "https://partner.invalid/hook" }).webhook ?? .init()
    }
  }

  /// Runs `body` with the clients of `service`, as `caller`.
  func call<Result: Sendable>(
    _ service: NestServiceName, as caller: Caller, _ body: (any ServiceClients) async throws -> Result
  ) async throws -> Result {
    try await self.platform.withClient(service, token: try await self.platform.token(caller.role, caller.subject), body)
  }
}
