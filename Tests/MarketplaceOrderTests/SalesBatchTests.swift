// The outbox sends a round's sales to settlement in one call: how the round's rows are
// grouped, and what happens against a settlement service from before RecordSales.
import GRPCCore
import GRPCInProcessTransport
import NestProto
import NestProtoRuntime
import Testing

@testable import MarketplaceOrder

/// settlement as it was before RecordSales: RecordSale only, refusing order "taken".
struct SettlementBeforeRecordSales: RegistrableRPCService {
  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerHandler(
      forMethod: Nest_Settlement_V1_SettlementService.Method.RecordSale.descriptor,
      deserializer: NestProtoDeserializer<Nest_Settlement_V1_RecordSaleRequest>(),
      serializer: NestProtoSerializer<Nest_Settlement_V1_RecordSaleResponse>()
    ) { request, _ in
      let sale = try await ServerRequest(stream: request).message
      guard sale.orderID != "taken" else {
        throw RPCError(code: .alreadyExists, message: "order taken was already recorded with a different snapshot")
      }
      return StreamingServerResponse(
        single: ServerResponse(message: .with { $0.transaction = .with { $0.id = "txn-\(sale.orderID)" } }))
    }
  }
}

@Suite("Sales batches")
struct SalesBatchTests {
  static func row(_ kind: Nest_Order_V1_DeliveryKind, _ orderID: String, _ id: String) -> Delivery {
    .with {
      $0.id = id
      $0.orderID = orderID
      $0.kind = kind
    }
  }

  @Test("a round's sales go in one call, an order at most once per call; every other row alone")
  func grouping() {
    let due = [
      Self.row(.recordSale, "o1", "d1"), Self.row(.createInstance, "o2", "d2"), Self.row(.recordSale, "o2", "d3"),
      Self.row(.recordSale, "o1", "d4"), Self.row(.recordRefund, "o3", "d5"),
    ]
    let attempts = Dispatcher.attempts(due).map { $0.map(\.id) }
    #expect(attempts == [["d1", "d3"], ["d4"], ["d2"], ["d5"]])
    let many = (0..<300).map { Self.row(.recordSale, "o\($0)", "d\($0)") }
    #expect(Dispatcher.attempts(many).map(\.count) == [256, 44])
  }

  @Test("against a settlement service from before RecordSales, the sales go one call each, each with its result")
  func olderSettlement() async throws {
    let transport = InProcessTransport()
    try await withGRPCServer(transport: transport.server, services: [SettlementBeforeRecordSales()]) { _ in
      try await withGRPCClient(transport: transport.client) { client in
        let peers = RPCOrderPeers(
          catalog: Nest_Catalog_V1_CatalogService.Client(wrapping: client),
          entitlement: Nest_Entitlement_V1_EntitlementService.Client(wrapping: client),
          settlement: Nest_Settlement_V1_SettlementService.Client(wrapping: client))
        let results = try await peers.recordSales(
          ["a", "taken", "b"].map { id in .with { $0.orderID = id } })
        #expect(results.map(\.orderID) == ["a", "taken", "b"])
        #expect(results.map(\.errorCode) == [0, Int32(RPCError.Code.alreadyExists.rawValue), 0])
        #expect(results.map { $0.recorded?.transaction?.id ?? "" } == ["txn-a", "", "txn-b"])
        #expect(results[1].errorMessage.contains("different snapshot"))
      }
    }
  }
}
