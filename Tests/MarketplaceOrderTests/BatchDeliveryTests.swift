// The outbox sends a round's instances to entitlement and its sales to settlement in one call
// each: how the round's rows are grouped, how each row learns its own result, and what
// happens against services from before CreateServiceInstances and RecordSales.
import Foundation
import GRPCCore
import GRPCInProcessTransport
import Logging
import NestProto
import NestProtoRuntime
import NestServiceKit
import Synchronization
import Testing

@testable import MarketplaceOrder

/// settlement as it was before RecordSales: RecordSale only, refusing order "taken" and
/// unreachable for order "down"; it notes the orders it was called for.
final class SettlementBeforeRecordSales: RegistrableRPCService, Sendable {
  let called = Mutex<[String]>([])

  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerHandler(
      forMethod: Nest_Settlement_V1_SettlementService.Method.RecordSale.descriptor,
      deserializer: NestProtoDeserializer<Nest_Settlement_V1_RecordSaleRequest>(),
      serializer: NestProtoSerializer<Nest_Settlement_V1_RecordSaleResponse>()
    ) { request, _ in
      let sale = try await ServerRequest(stream: request).message
      self.called.withLock { $0.append(sale.orderID) }
      guard sale.orderID != "down" else { throw RPCError(code: .unavailable, message: "settlement is down") }
      guard sale.orderID != "taken" else {
        throw RPCError(code: .alreadyExists, message: "order taken was already recorded with a different snapshot")
      }
      return StreamingServerResponse(
        single: ServerResponse(message: .with { $0.transaction = .with { $0.id = "txn-\(sale.orderID)" } }))
    }
  }
}

/// settlement answering RecordSales oddly: its results out of order, none for order "b", no
/// transaction for order "a", ALREADY_EXISTS for order "d", "txn-c" for order "c".
struct OddSettlement: RegistrableRPCService {
  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerHandler(
      forMethod: Nest_Settlement_V1_SettlementService.Method.RecordSales.descriptor,
      deserializer: NestProtoDeserializer<Nest_Settlement_V1_RecordSalesRequest>(),
      serializer: NestProtoSerializer<Nest_Settlement_V1_RecordSalesResponse>()
    ) { request, _ in
      _ = try await ServerRequest(stream: request).message
      let results: [Nest_Settlement_V1_SaleResult] = [
        .with {
          $0.orderID = "d"
          $0.errorCode = Int32(RPCError.Code.alreadyExists.rawValue)
          $0.errorMessage = "recorded differently"
        },
        .with {
          $0.orderID = "c"
          $0.recorded = .with { $0.transaction = .with { $0.id = "txn-c" } }
        },
        .with { $0.orderID = "a" },
      ]
      return StreamingServerResponse(single: ServerResponse(message: .with { $0.results = results }))
    }
  }
}

/// entitlement as it was before CreateServiceInstances: CreateServiceInstance only, refusing
/// order "taken"; it notes the orders it was called for.
final class EntitlementBeforeCreateInstances: RegistrableRPCService, Sendable {
  let called = Mutex<[String]>([])

  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerHandler(
      forMethod: Nest_Entitlement_V1_EntitlementService.Method.CreateServiceInstance.descriptor,
      deserializer: NestProtoDeserializer<Nest_Entitlement_V1_CreateServiceInstanceRequest>(),
      serializer: NestProtoSerializer<Nest_Entitlement_V1_CreateServiceInstanceResponse>()
    ) { request, _ in
      let made = try await ServerRequest(stream: request).message
      self.called.withLock { $0.append(made.orderID) }
      guard made.orderID != "taken" else {
        throw RPCError(code: .alreadyExists, message: "an instance for order taken exists from a different request")
      }
      return StreamingServerResponse(
        single: ServerResponse(message: .with { $0.instance = .with { $0.id = "inst-\(made.orderID)" } }))
    }
  }
}

/// entitlement answering CreateServiceInstances oddly: its results out of order, none for
/// order "b", no instance for order "a", ALREADY_EXISTS for order "d", "inst-c" for order "c".
struct OddEntitlement: RegistrableRPCService {
  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerHandler(
      forMethod: Nest_Entitlement_V1_EntitlementService.Method.CreateServiceInstances.descriptor,
      deserializer: NestProtoDeserializer<Nest_Entitlement_V1_CreateServiceInstancesRequest>(),
      serializer: NestProtoSerializer<Nest_Entitlement_V1_CreateServiceInstancesResponse>()
    ) { request, _ in
      _ = try await ServerRequest(stream: request).message
      let results: [Nest_Entitlement_V1_InstanceResult] = [
        .with {
          $0.orderID = "d"
          $0.errorCode = Int32(RPCError.Code.alreadyExists.rawValue)
          $0.errorMessage = "made from a different request"
        },
        .with {
          $0.orderID = "c"
          $0.instance = .with { $0.id = "inst-c" }
        },
        .with { $0.orderID = "a" },
      ]
      return StreamingServerResponse(single: ServerResponse(message: .with { $0.results = results }))
    }
  }
}

@Suite("Batched deliveries")
struct BatchDeliveryTests {
  static func row(_ kind: Nest_Order_V1_DeliveryKind, _ orderID: String, _ id: String) -> Delivery {
    .with {
      $0.id = id
      $0.orderID = orderID
      $0.kind = kind
    }
  }

  @Test(
    "a round's instances go in one call and its sales in another, an order at most once per call; every other row alone"
  )
  func grouping() {
    let due = [
      Self.row(.recordSale, "o1", "d1"), Self.row(.createInstance, "o2", "d2"), Self.row(.recordSale, "o2", "d3"),
      Self.row(.recordSale, "o1", "d4"), Self.row(.recordRefund, "o3", "d5"), Self.row(.createInstance, "o4", "d6"),
      Self.row(.renewInstance, "o5", "d7"),
    ]
    let attempts = Dispatcher.attempts(due).map { $0.map(\.id) }
    #expect(attempts == [["d1", "d3"], ["d2", "d6"], ["d4"], ["d5"], ["d7"]])
    let many = (0..<300).map { Self.row(.recordSale, "o\($0)", "d\($0)") }
    #expect(Dispatcher.attempts(many).map(\.count) == [256, 44])
    let instances = (0..<300).map { Self.row(.createInstance, "o\($0)", "d\($0)") }
    #expect(
      Dispatcher.attempts(instances + many).map { [$0[0].kind == .createInstance ? 1 : 2, $0.count] } == [
        [1, 256], [1, 44], [2, 256], [2, 44],
      ])
  }

  @Test("against an entitlement service from before CreateServiceInstances, the instances go one call each")
  func olderEntitlement() async throws {
    let transport = InProcessTransport()
    let entitlement = EntitlementBeforeCreateInstances()
    try await withGRPCServer(transport: transport.server, services: [entitlement]) { _ in
      try await withGRPCClient(transport: transport.client) { client in
        let peers = RPCOrderPeers(
          catalog: Nest_Catalog_V1_CatalogService.Client(wrapping: client),
          entitlement: Nest_Entitlement_V1_EntitlementService.Client(wrapping: client),
          settlement: Nest_Settlement_V1_SettlementService.Client(wrapping: client))
        let results = try await peers.createInstances(["a", "taken", "b"].map { id in .with { $0.orderID = id } })
        #expect(results.map(\.orderID) == ["a", "taken", "b"])
        #expect(results.map(\.errorCode) == [0, Int32(RPCError.Code.alreadyExists.rawValue), 0])
        #expect(results.map { $0.instance?.id ?? "" } == ["inst-a", "", "inst-b"])
        #expect(results[1].errorMessage.contains("different request"))
        #expect(entitlement.called.withLock { $0 } == ["a", "taken", "b"])
      }
    }
  }

  @Test(
    "against a settlement service from before RecordSales, the sales go one call each, each with its result, until one finds it unreachable"
  )
  func olderSettlement() async throws {
    let transport = InProcessTransport()
    let settlement = SettlementBeforeRecordSales()
    try await withGRPCServer(transport: transport.server, services: [settlement]) { _ in
      try await withGRPCClient(transport: transport.client) { client in
        let peers = RPCOrderPeers(
          catalog: Nest_Catalog_V1_CatalogService.Client(wrapping: client),
          entitlement: Nest_Entitlement_V1_EntitlementService.Client(wrapping: client),
          settlement: Nest_Settlement_V1_SettlementService.Client(wrapping: client))
        let results = try await peers.recordSales(
          ["a", "taken", "b", "down", "c"].map { id in .with { $0.orderID = id } })
        #expect(results.map(\.orderID) == ["a", "taken", "b", "down", "c"])
        let exists = Int32(RPCError.Code.alreadyExists.rawValue)
        let unavailable = Int32(RPCError.Code.unavailable.rawValue)
        #expect(results.map(\.errorCode) == [0, exists, 0, unavailable, unavailable])
        #expect(results.map { $0.recorded?.transaction?.id ?? "" } == ["txn-a", "", "txn-b", "", ""])
        #expect(results[1].errorMessage.contains("different snapshot"))
        // Once settlement was unreachable, "c" failed as "down" did, without a call of its own.
        #expect(settlement.called.withLock { $0 } == ["a", "taken", "b", "down"])
      }
    }
  }

  @Test("each sale row is acknowledged or failed by the result for its own order, whatever order they come in")
  func salesByOrder() async throws {
    try await Self.resultsByOrder(.recordSale, from: OddSettlement(), acknowledged: .transactionID("txn-c"))
  }

  @Test("each instance row is acknowledged or failed by the result for its own order, whatever order they come in")
  func instancesByOrder() async throws {
    try await Self.resultsByOrder(.createInstance, from: OddEntitlement(), acknowledged: .instanceID("inst-c"))
  }

  /// Rows of `kind` for orders a, b, c, d and one whose order is gone, attempted against
  /// `target` (OddSettlement or OddEntitlement).
  static func resultsByOrder(
    _ kind: Nest_Order_V1_DeliveryKind, from target: any RegistrableRPCService,
    acknowledged: Delivery.OneOf_Acknowledgement
  ) async throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sales-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let database = try ServiceDatabase.open(
      path: directory.appendingPathComponent("order.sqlite").path, migrations: OrderStore.migrations)
    let transport = InProcessTransport()
    try await withGRPCServer(transport: transport.server, services: [target]) { _ in
      try await withGRPCClient(transport: transport.client) { client in
        let dispatcher = Dispatcher(
          store: OrderStore(database: database),
          peers: RPCOrderPeers(
            catalog: Nest_Catalog_V1_CatalogService.Client(wrapping: client),
            entitlement: Nest_Entitlement_V1_EntitlementService.Client(wrapping: client),
            settlement: Nest_Settlement_V1_SettlementService.Client(wrapping: client)),
          logger: Logger(label: "test"))
        let ids = ["a", "b", "c", "d"]
        let orders = Dictionary(uniqueKeysWithValues: ids.map { id in (id, Order.with { $0.id = id }) })
        let outcomes = await dispatcher.attemptBatch(
          ids.map { Self.row(kind, $0, "row-\($0)") } + [Self.row(kind, "gone", "row-gone")], orders: orders)
        let byRow = Dictionary(uniqueKeysWithValues: outcomes.map { ($0.delivery.id, $0) })
        #expect(byRow["row-c"]?.failure == nil)
        #expect(byRow["row-c"]?.acknowledgement == acknowledged)
        #expect(byRow["row-a"]?.failure?.message.contains("answered no") == true)
        #expect(byRow["row-b"]?.failure?.message.contains("no result") == true)
        #expect(byRow["row-d"]?.failure?.code == Int32(RPCError.Code.alreadyExists.rawValue))
        // An instance row's order learns its instance when the outcome is recorded.
        #expect(byRow["row-c"]?.instanceID == (kind == .createInstance ? "inst-c" : nil))
        // A row whose order is missing fails alone, before the call.
        #expect(byRow["row-gone"]?.failure?.message.contains("missing") == true)
        #expect(outcomes.filter { $0.acknowledgement != nil }.map(\.delivery.id) == ["row-c"])
      }
    }
  }
}
