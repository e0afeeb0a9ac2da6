// CreateServiceInstances: several instances in one call, each made as CreateServiceInstance
// makes it and answered on its own, so that one refused leaves the others made.
import Foundation
import GRDB
import GRPCCore
import NestProto
import NestTestKit
import Testing

@Suite("CreateServiceInstances")
struct CreateInstancesTests {
  /// One platform per test, with a private base service sold directly.
  func withService(_ body: (NestTestPlatform, Nest_Catalog_V1_Service) async throws -> Void) async throws {
    let platform = try await NestTestPlatform.start()
    do {
      try await body(platform, try await platform.publishedBase(isv: "isv-1", type: .private))
    } catch {
      await platform.stop()
      throw error
    }
    await platform.stop()
  }

  static func createInstances(
    _ requests: [Nest_Entitlement_V1_CreateServiceInstanceRequest], token: String = "", on platform: NestTestPlatform
  ) async throws -> [Nest_Entitlement_V1_InstanceResult] {
    try await platform.entitlement(as: .service, "marketplace-order") {
      try await $0.createServiceInstances(
        .with {
          $0.clientToken = token
          $0.instances = requests
        }
      ).results
    }
  }

  @Test(
    "each instance has its result: made, the first instance again, or refused with CreateServiceInstance's code; refusals make nothing"
  )
  func perInstance() async throws {
    try await self.withService { platform, a in
      func request(_ order: String) async throws -> Nest_Entitlement_V1_CreateServiceInstanceRequest {
        try await platform.instanceRequest(order: order, service: a.id, customer: "cust-1", parameterSet: "small")
      }
      let before = try await platform.createInstance(try await request("o-before"))
      _ = try await platform.createInstance(try await request("o-other"))
      var different = try await request("o-other")
      different.quantity = 2
      var unknownSet = try await request("o-unknown-set")
      unknownSet.parameterSetName = "huge"
      var noUnits = try await request("o-no-units")
      noUnits.quantity = 0
      var unknownAuthorization = try await request("o-unknown-authorization")
      unknownAuthorization.authorizationID = "auth-nobody-granted"

      let results = try await Self.createInstances(
        [
          try await request("o-new"), try await request("o-before"), different, unknownSet, noUnits,
          unknownAuthorization,
        ],
        on: platform)
      #expect(
        results.map(\.orderID) == [
          "o-new", "o-before", "o-other", "o-unknown-set", "o-no-units", "o-unknown-authorization",
        ])
      let status = { (code: RPCError.Code) in Int32(code.rawValue) }
      #expect(
        results.map(\.errorCode) == [
          0, 0, status(.alreadyExists), status(.invalidArgument), status(.invalidArgument), status(.notFound),
        ])
      // A new instance as CreateServiceInstance makes it: the customer's, with its license.
      let made = try #require(results[0].instance)
      #expect(made.resourceOwner?.accountID == "cust-1" && made.parameters == ["cpu": "2"])
      guard case .license? = made.access else {
        Issue.record("no license: \(made)")
        return
      }
      // A repeat of an order answers its first instance.
      #expect(results[1].instance?.id == before.id)
      #expect(results[3].errorMessage.contains("parameter"), "\(results[3].errorMessage)")
      #expect(results[5].errorMessage.contains("auth-nobody-granted"), "\(results[5].errorMessage)")
      #expect(results[2...].allSatisfy { $0.instance == nil })

      // The refused ones made nothing; the new one is there for its order.
      let instances = try await platform.entitlement(as: .operator, "op") {
        try await $0.listServiceInstances(.with { $0.customerID = "cust-1" }).instances
      }
      #expect(Set(instances.map(\.orderID)) == ["o-before", "o-other", "o-new"])
      #expect(instances.first { $0.orderID == "o-new" }?.id == made.id)
      #expect(try await platform.deployedInstance(made.id).status == .deployed)
    }
  }

  @Test("an instance the database's own constraints refuse fails alone, its savepoint undone; the others are made")
  func constraintRefusal() async throws {
    try await self.withService { platform, a in
      // entitlement's database refusing one instance's client token as a trigger refuses a bad
      // write, after the instance's row was written: SQLITE_CONSTRAINT.
      let database = try DatabaseQueue(path: platform.directory.appendingPathComponent("entitlement.sqlite").path)
      try await database.write { db in
        try db.execute(
          sql: """
            CREATE TRIGGER refuse_k_bad AFTER INSERT ON client_tokens WHEN NEW.token = 'k-bad'
            BEGIN SELECT RAISE(ABORT, 'refused by the test'); END
            """)
      }
      var requests: [Nest_Entitlement_V1_CreateServiceInstanceRequest] = []
      for order in ["o-1", "o-bad", "o-2"] {
        var request = try await platform.instanceRequest(
          order: order, service: a.id, customer: "cust-1", parameterSet: "")
        request.clientToken = order == "o-bad" ? "k-bad" : ""
        requests.append(request)
      }
      let results = try await Self.createInstances(requests, on: platform)
      #expect(results.map(\.errorCode) == [0, Int32(RPCError.Code.internalError.rawValue), 0])
      #expect(results[1].errorMessage.contains("SQLITE_CONSTRAINT"), "\(results[1].errorMessage)")
      let instances = try await platform.entitlement(as: .operator, "op") {
        try await $0.listServiceInstances(.init()).instances
      }
      // o-bad's instance, written before the trigger refused its token, went with its savepoint.
      #expect(Set(instances.map(\.orderID)) == ["o-1", "o-2"])
    }
  }

  @Test("the call is refused as a whole when it holds no instances, more than 256, or one order twice")
  func wholeCall() async throws {
    try await self.withService { platform, a in
      let one = try await platform.instanceRequest(order: "o-1", service: a.id, customer: "cust-1", parameterSet: "")
      let many = (0...256).map { index in
        var request = one
        request.orderID = "o-\(index)"
        return request
      }
      for batch in [[], many, [one, many[2], one]] {
        let refused = await code { _ = try await Self.createInstances(batch, on: platform) }
        #expect(refused == .invalidArgument, "\(batch.count) instances")
      }
      let instances = try await platform.entitlement(as: .operator, "op") {
        try await $0.listServiceInstances(.init()).instances
      }
      #expect(instances.isEmpty)
    }
  }

  @Test("the same client token and batch return the first results; another batch under it is ALREADY_EXISTS")
  func batchToken() async throws {
    try await self.withService { platform, a in
      let one = try await platform.instanceRequest(order: "o-1", service: a.id, customer: "cust-1", parameterSet: "")
      var two = one
      two.orderID = "o-2"
      let first = try await Self.createInstances([one], token: "batch-1", on: platform)
      let made = try #require(first.first?.instance)
      #expect(made.status == .created)
      // Once the instance has moved on, the token still answers the first results (a repeat
      // of the order alone would answer the instance as it is now).
      #expect(try await platform.deployedInstance(made.id).status != .created)
      #expect(try await Self.createInstances([one], token: "batch-1", on: platform) == first)
      #expect(try await Self.createInstances([one], on: platform).first?.instance?.status != .created)
      #expect(
        await code { _ = try await Self.createInstances([two], token: "batch-1", on: platform) } == .alreadyExists)
    }
  }
}
