// What each order asks of entitlement's database must not grow with the instances already
// sold: the queries of the order path search an index, and never read the instances table
// from end to end.
import Foundation
import GRDB
import NestProto
import NestServiceKit
import NestTestKit
import Testing

@testable import Entitlement

@Suite("Entitlement's order-path queries")
struct QueryPlanTests {
  func plan(_ sql: String, _ arguments: StatementArguments) throws -> [String] {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("plan-\(UUID()).sqlite").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    let database = try ServiceDatabase.open(path: path, migrations: EntitlementStore.migrations)
    return try database.readNow { db in
      try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: arguments).map { $0["detail"] as String }
    }
  }

  @Test("the deployment driver's pending instances and a reservation's count search indexes")
  func indexed() throws {
    let undeployed = try self.plan(EntitlementStore.undeployedInstancesSQL, [1, 2])
    #expect(undeployed.contains { $0.hasPrefix("SEARCH instances USING INDEX instances_status") }, "\(undeployed)")
    let slots = try self.plan(EntitlementStore.slotsInUseSQL, ["auth", 7, "ord", 1, 0])
    #expect(!slots.contains { $0.hasPrefix("SCAN") && $0 != "SCAN CONSTANT ROW" }, "\(slots)")
    // The authorization's count as SQLite keeps it, the order's own instance by its order id:
    // neither reads an entry per instance under the authorization.
    #expect(slots.contains { $0.contains("SEARCH authorization_live_instances USING PRIMARY KEY") }, "\(slots)")
    #expect(
      slots.contains { $0.contains("SEARCH instances USING INDEX sqlite_autoindex_instances_2 (order_id=?)") },
      "\(slots)")
    #expect(!slots.contains { $0.contains("instances_authorization_live") }, "\(slots)")
    #expect(slots.contains { $0.contains("INDEX instance_slots_held") }, "\(slots)")
  }

  @Test(
    "the places taken under each authorization, as SQLite keeps them, follow every instance sold, changed and released")
  func liveInstanceCounts() throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("live-\(UUID()).sqlite").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    let database = try ServiceDatabase.open(path: path, migrations: EntitlementStore.migrations)
    let authorizations = ["auth-a", "auth-b", ""]  // "": sold directly, no place to hold
    let statuses: [Nest_Entitlement_V1_DeploymentStatus] = [
      .created, .deploying, .deployed, .deployFailed, .suspended, .expired, .released,
    ]
    var generator = SeededGenerator(state: 19)
    var instances: [Nest_Entitlement_V1_ServiceInstance] = []
    for step in 0..<400 {
      try database.write { db in
        if instances.isEmpty || Int.random(in: 0..<3, using: &generator) == 0 {
          let instance = Nest_Entitlement_V1_ServiceInstance.with {
            $0.id = "inst-\(step)"
            $0.orderID = "ord-\(step)"
            $0.serviceID = "svc"
            $0.customerID = "cust"
            $0.authorizationID = authorizations.randomElement(using: &generator)!
            $0.scenario = .scenario3
            $0.accessMode = .logonURL
            $0.status = statuses.randomElement(using: &generator)!
            $0.quantity = 1
          }
          try EntitlementStore.insert(instance, request: .init(), in: db)
          instances.append(instance)
        } else {
          let index = Int.random(in: 0..<instances.count, using: &generator)
          instances[index].status = statuses.randomElement(using: &generator)!
          if Int.random(in: 0..<5, using: &generator) == 0 {
            instances[index].authorizationID = authorizations.randomElement(using: &generator)!
          }
          try EntitlementStore.update(instances[index], in: db)
        }
        if step % 50 == 49 {
          let gone = instances.remove(at: Int.random(in: 0..<instances.count, using: &generator))
          try db.execute(sql: "DELETE FROM instances WHERE id = ?", arguments: [gone.id])
        }
      }
      for authorization in authorizations.dropLast() {
        let kept = try database.readNow {
          try EntitlementStore.liveInstanceCount(authorizationID: authorization, in: $0)
        }
        let live = instances.filter { $0.authorizationID == authorization && $0.status != .released }.count
        #expect(kept == Int32(live), "after step \(step), \(authorization)")
      }
    }
    // A reservation counts the others' instances, not the order's own.
    let own = try #require(instances.first { $0.authorizationID == "auth-a" && $0.status != .released })
    let others = try database.readNow {
      try EntitlementStore.slotsInUse(authorizationID: "auth-a", except: own.orderID, now: 0, in: $0)
    }
    #expect(others == Int32(instances.filter { $0.authorizationID == "auth-a" && $0.status != .released }.count - 1))
  }
}
