// What each order asks of entitlement's database must not grow with the instances already
// sold: the queries of the order path search an index, and never read the instances table
// from end to end.
import Foundation
import GRDB
import NestServiceKit
import Testing

@testable import Entitlement

@Suite("Entitlement's order-path queries")
struct QueryPlanTests {
  func plan(_ sql: String, _ arguments: StatementArguments) throws -> [String] {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("plan-\(UUID()).sqlite").path
    defer { try? FileManager.default.removeItem(atPath: path) }
    let database = try ServiceDatabase.open(path: path, migrations: EntitlementStore.migrations)
    return try database.read { db in
      try Row.fetchAll(db, sql: "EXPLAIN QUERY PLAN " + sql, arguments: arguments).map { $0["detail"] as String }
    }
  }

  @Test("the deployment driver's pending instances and a reservation's count search indexes")
  func indexed() throws {
    let undeployed = try self.plan(EntitlementStore.undeployedInstancesSQL, [1, 2])
    #expect(undeployed.contains { $0.hasPrefix("SEARCH instances USING INDEX instances_status") }, "\(undeployed)")
    let slots = try self.plan(EntitlementStore.slotsInUseSQL, ["auth", 6, "ord", 1, 0])
    #expect(!slots.contains { $0.hasPrefix("SCAN") && $0 != "SCAN CONSTANT ROW" }, "\(slots)")
    #expect(slots.contains { $0.contains("COVERING INDEX instances_authorization_live") }, "\(slots)")
    #expect(slots.contains { $0.contains("INDEX instance_slots_held") }, "\(slots)")
  }
}
