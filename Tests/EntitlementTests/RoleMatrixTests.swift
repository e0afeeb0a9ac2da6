// Every RPC of catalog and entitlement, called by every kind of caller against one fixture:
// allowed exactly where DESIGN section 8 says; PERMISSION_DENIED or NOT_FOUND elsewhere.
// "Allowed" means the call got past authorization: it succeeded or failed for a business
// reason (a FAILED_PRECONDITION, say), never PERMISSION_DENIED, NOT_FOUND or UNAUTHENTICATED.
import Catalog
import Entitlement
import Foundation
import GRPCCore
import NestProto
import NestProtoTesting
import NestTestKit
import Testing

/// A: isv-1's PRIVATE base, listed. B: dist-1's FULLY_MANAGED service on A (scenario 2),
/// listed. An ACTIVE authorization (isv-1, dist-1), cust-1's deployed instance of B (owned by
/// dist-1), and cust-1's pending permission request on it.
struct Fixture: Sendable {
  var platform: InProcessPlatform
  var a: Nest_Catalog_V1_Service
  var b: Nest_Catalog_V1_Service
  var bProduct: String
  var authorization: String
  var instance: String
  var permission: String

  static func make() async throws -> Fixture {
    let platform = try InProcessPlatform()
    let a = try await platform.publishedBase(isv: "isv-1", type: .private)
    let authorization = try await acting(.isv, "isv-1") {
      try await platform.entitlement.grantDistribution(
        request: .with {
          $0.baseServiceID = a.id
          $0.distributorID = "dist-1"
          $0.terms = InProcessPlatform.terms(wholesale: 1_000)
        }, context: handlerContext
      ).authorization!
    }
    let b = try await platform.publishedDerived(distributor: "dist-1", base: a.id, type: .fullyManaged, price: 2_000)
    let instance = try await platform.createInstance(
      try await platform.instanceRequest(order: "order-1", service: b.id, customer: "cust-1", parameterSet: ""))
    await platform.deployments.deployPending()
    let permission = try await acting(.customer, "cust-1") {
      try await platform.entitlement.requestResourcePermission(
        request: .with {
          $0.instanceID = instance.id
          $0.operation = "db:ReadSlowLog"
          $0.reason = "slow queries"
          $0.requestedDurationSeconds = 600
        }, context: handlerContext
      ).request!
    }
    return Fixture(
      platform: platform, a: a, b: b, bProduct: b.productID, authorization: authorization.id, instance: instance.id,
      permission: permission.id)
  }
}

struct Case: Sendable, CustomTestStringConvertible {
  var rpc: String
  var allowed: Set<Who>
  var call: @Sendable (Fixture) async throws -> Void
  var testDescription: String { self.rpc }

  init(_ rpc: String, _ allowed: Set<Who>, _ call: @escaping @Sendable (Fixture) async throws -> Void) {
    self.rpc = rpc
    self.allowed = allowed
    self.call = call
  }
}

let everyone = Set(Who.allCases)
let owners: Set<Who> = [.dist1, .op, .svc]  // operate cust-1's instance: its resource owner and the platform

let cases: [Case] = [
  // MARK: CatalogService
  Case("CreateService", [.isv1, .isv2]) { f in
    _ = try await f.platform.catalog.createService(
      request: .with {
        $0.name = "New"
        $0.type = .private
        $0.deploymentPackage = InProcessPlatform.package
      }, context: handlerContext)
  },
  Case("CreateDerivedService", [.dist1, .dist2]) { f in
    _ = try await f.platform.catalog.createDerivedService(
      request: .with {
        $0.baseServiceID = f.a.id
        $0.name = "Another B"
        $0.type = .fullyManaged
      }, context: handlerContext)
  },
  Case("CreateServiceVersion", [.isv1]) { f in
    _ = try await f.platform.catalog.createServiceVersion(
      request: .with {
        $0.serviceID = f.a.id
        $0.deploymentPackage = InProcessPlatform.package
      }, context: handlerContext)
  },
  Case("PublishService", [.isv1]) { f in
    _ = try await f.platform.catalog.publishService(
      request: .with {
        $0.serviceID = f.a.id
        $0.versionID = f.a.defaultVersionID
      }, context: handlerContext)
  },
  Case("TakeServiceOffline", [.dist1]) { f in
    _ = try await f.platform.catalog.takeServiceOffline(
      request: .with { $0.serviceID = f.b.id }, context: handlerContext)
  },
  Case("GetService", everyone) { f in
    _ = try await f.platform.catalog.getService(request: .with { $0.serviceID = f.b.id }, context: handlerContext)
  },
  Case("ListServices", everyone) { f in
    _ = try await f.platform.catalog.listServices(request: .init(), context: handlerContext)
  },
  Case("EnableDistribution", [.isv1]) { f in
    _ = try await f.platform.catalog.enableDistribution(
      request: .with { $0.serviceID = f.a.id }, context: handlerContext)
  },
  Case("DisableDistribution", [.isv1]) { f in
    _ = try await f.platform.catalog.disableDistribution(
      request: .with { $0.serviceID = f.a.id }, context: handlerContext)
  },
  Case("ListOnMarketplace", [.dist1]) { f in
    _ = try await f.platform.catalog.listOnMarketplace(
      request: .with {
        $0.serviceID = f.b.id
        $0.plans = [InProcessPlatform.plan(2_500)]
      }, context: handlerContext)
  },
  Case("DelistFromMarketplace", [.dist1]) { f in
    _ = try await f.platform.catalog.delistFromMarketplace(
      request: .with { $0.productID = f.bProduct }, context: handlerContext)
  },
  Case("GetProduct", everyone) { f in
    _ = try await f.platform.catalog.getProduct(
      request: .with { $0.key = .productID(f.bProduct) }, context: handlerContext)
  },
  Case("ListProducts", everyone) { f in
    _ = try await f.platform.catalog.listProducts(request: .init(), context: handlerContext)
  },
  Case("ResolveScenario", everyone) { f in
    _ = try await f.platform.catalog.resolveScenario(request: .with { $0.serviceID = f.b.id }, context: handlerContext)
  },

  // MARK: EntitlementService
  Case("ApplyForDistribution", [.dist1, .dist2]) { f in
    _ = try await f.platform.entitlement.applyForDistribution(
      request: .with { $0.baseServiceID = f.a.id }, context: handlerContext)
  },
  Case("ApproveDistribution", [.isv1]) { f in
    _ = try await f.platform.entitlement.approveDistribution(
      request: .with {
        $0.authorizationID = f.authorization
        $0.terms = InProcessPlatform.terms(wholesale: 1_000)
      }, context: handlerContext)
  },
  Case("RejectDistribution", [.isv1]) { f in
    _ = try await f.platform.entitlement.rejectDistribution(
      request: .with {
        $0.authorizationID = f.authorization
        $0.reason = "no"
      }, context: handlerContext)
  },
  Case("GrantDistribution", [.isv1]) { f in
    _ = try await f.platform.entitlement.grantDistribution(
      request: .with {
        $0.baseServiceID = f.a.id
        $0.distributorID = "dist-2"
        $0.terms = InProcessPlatform.terms(wholesale: 1_000)
      }, context: handlerContext)
  },
  Case("RevokeDistribution", [.isv1]) { f in
    _ = try await f.platform.entitlement.revokeDistribution(
      request: .with {
        $0.authorizationID = f.authorization
        $0.reason = "ended"
      }, context: handlerContext)
  },
  Case("GetDistributionAuthorization", [.isv1, .dist1, .op, .svc]) { f in
    _ = try await f.platform.entitlement.getDistributionAuthorization(
      request: .with { $0.authorizationID = f.authorization }, context: handlerContext)
  },
  Case("ListDistributionAuthorizations", [.isv1, .isv2, .dist1, .dist2, .op, .svc]) { f in
    _ = try await f.platform.entitlement.listDistributionAuthorizations(request: .init(), context: handlerContext)
  },
  Case("CheckDistribution", [.isv1, .dist1, .op, .svc]) { f in
    _ = try await f.platform.entitlement.checkDistribution(
      request: .with {
        $0.baseServiceID = f.a.id
        $0.distributorID = "dist-1"
      }, context: handlerContext)
  },
  Case("CreateServiceInstance", [.svc]) { f in
    _ = try await f.platform.entitlement.createServiceInstance(
      request: try await f.platform.instanceRequest(
        order: "order-2", service: f.b.id, customer: "cust-2", parameterSet: ""),
      context: handlerContext)
  },
  Case("GetServiceInstance", [.cust1, .dist1, .isv1, .op, .svc]) { f in
    _ = try await f.platform.entitlement.getServiceInstance(
      request: .with { $0.key = .instanceID(f.instance) }, context: handlerContext)
  },
  Case("ListServiceInstances", everyone) { f in
    _ = try await f.platform.entitlement.listServiceInstances(request: .init(), context: handlerContext)
  },
  Case("RenewServiceInstance", owners) { f in
    _ = try await f.platform.entitlement.renewServiceInstance(
      request: .with {
        $0.instanceID = f.instance
        $0.renewal = .periods(1)
      }, context: handlerContext)
  },
  Case("SuspendServiceInstance", owners) { f in
    _ = try await f.platform.entitlement.suspendServiceInstance(
      request: .with { $0.instanceID = f.instance }, context: handlerContext)
  },
  Case("ResumeServiceInstance", owners) { f in
    _ = try await f.platform.entitlement.resumeServiceInstance(
      request: .with { $0.instanceID = f.instance }, context: handlerContext)
  },
  Case("ReleaseServiceInstance", owners) { f in
    _ = try await f.platform.entitlement.releaseServiceInstance(
      request: .with { $0.instanceID = f.instance }, context: handlerContext)
  },
  Case("CheckLicense", everyone) { f in
    _ = try await f.platform.entitlement.checkLicense(
      request: .with { $0.license = .licenseID("lic_x") }, context: handlerContext)
  },
  Case("RequestResourcePermission", [.cust1]) { f in
    _ = try await f.platform.entitlement.requestResourcePermission(
      request: .with {
        $0.instanceID = f.instance
        $0.operation = "ecs:Reboot"
        $0.reason = "stuck"
        $0.requestedDurationSeconds = 60
      }, context: handlerContext)
  },
  Case("DecidePermissionRequest", [.dist1]) { f in
    _ = try await f.platform.entitlement.decidePermissionRequest(
      request: .with {
        $0.requestID = f.permission
        $0.decision = .approve
      }, context: handlerContext)
  },
  Case("ListPermissionRequests", everyone) { f in
    _ = try await f.platform.entitlement.listPermissionRequests(request: .init(), context: handlerContext)
  },
  Case("CheckResourcePermission", [.cust1, .dist1, .isv1, .op, .svc]) { f in
    _ = try await f.platform.entitlement.checkResourcePermission(
      request: .with {
        $0.instanceID = f.instance
        $0.requesterID = "cust-1"
        $0.operation = "db:ReadSlowLog"
      }, context: handlerContext)
  },
]

@Suite("Role matrix: catalog and entitlement")
struct RoleMatrixTests {
  @Test("every RPC is listed once")
  func complete() {
    let catalog = Nest_Catalog_V1_CatalogService.Method.descriptors.map(\.method)
    let entitlement = Nest_Entitlement_V1_EntitlementService.Method.descriptors.map(\.method)
    #expect(cases.map(\.rpc).sorted() == (catalog + entitlement).sorted())
  }

  @Test("each caller is allowed exactly where DESIGN says", arguments: cases)
  func matrix(_ rpcCase: Case) async throws {
    let fixture = try await Fixture.make()
    for who in Who.order(allowed: rpcCase.allowed) {
      let (role, subject) = who.principal
      let result = await code { try await acting(role, subject) { try await rpcCase.call(fixture) } }
      let problem = Who.problem(allowed: rpcCase.allowed.contains(who), code: result)
      #expect(problem == nil, "\(rpcCase.rpc) by \(who.rawValue): \(problem ?? "")")
    }
  }
}
