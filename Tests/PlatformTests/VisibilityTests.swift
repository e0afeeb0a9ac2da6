// Who may read what: a full run of each scenario and a direct sale, then every read RPC (and
// the responses of the mutating RPCs of the run) as each party. No response carries a field
// its reader may not read, checked field by field on the encoded bytes against the
// `(nest.access.v1.field)` declarations protoc reads from proto/, not against the code that
// clears them.
import Foundation
import GRPCCore
import NestDomain
import NestProto
import NestProtoCompiler
import NestProtoTesting
import NestServiceKit
import NestTestKit
import Testing

/// proto/ as protoc reads it: every message, and who may read each restricted field.
struct Schema: Sendable {
  let messages: [String: ProtoMessage]

  static let contract: Schema = {
    do {
      return try Schema()
    } catch {
      fatalError("cannot read proto/ with protoc: \(error)")
    }
  }()

  init() throws {
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("schema-\(UUID()).binpb")
    defer { try? FileManager.default.removeItem(at: output) }
    let protos = try FileManager.default.subpathsOfDirectory(atPath: Repository.path("proto").path)
      .filter { $0.hasSuffix(".proto") }.sorted()
    let result = try run(
      [
        "protoc", "-I", Repository.path("proto").path, "-I", "/usr/include", "--include_imports",
        "--descriptor_set_out=\(output.path)",
      ] + protos)
    guard result.status == 0 else { throw RPCError(code: .internalError, message: result.stderr) }
    var messages: [String: ProtoMessage] = [:]
    for file in try decodeFileDescriptorSet(Array(Data(contentsOf: output))) {
      for message in file.allMessages { messages[message.fullName] = message }
    }
    self.messages = messages
  }

  /// The fields of `bytes` (a `message`) that `role` may not read, with their paths.
  func unreadable(_ bytes: [UInt8], as message: String, role: Nest_Common_V1_Role, path: String = "") throws -> [String]
  {
    guard let type = self.messages[message] else { return [] }
    var found: [String] = []
    var reader = Wire(bytes)
    while let (number, value) = try reader.next() {
      guard let field = type.fields.first(where: { $0.number == number }) else { continue }
      let fieldPath = path.isEmpty ? field.name : "\(path).\(field.name)"
      if let readers = try field.access()?.readers, !readers.contains(role.rawValue) {
        found.append("\(message).\(field.name) at \(fieldPath)")
      }
      if field.kind == .message, case .bytes(let inner) = value {
        found += try self.unreadable(inner, as: field.typeName, role: role, path: fieldPath)
      }
    }
    return found
  }
}

/// The protobuf wire format, enough to walk fields.
struct Wire {
  enum Value { case varint, fixed, bytes([UInt8]) }
  let bytes: [UInt8]
  var offset = 0

  init(_ bytes: [UInt8]) { self.bytes = bytes }

  mutating func varint() throws -> UInt64 {
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while offset < bytes.count && shift < 64 {
      let byte = bytes[offset]
      offset += 1
      result |= UInt64(byte & 0x7f) << shift
      if byte & 0x80 == 0 { return result }
      shift += 7
    }
    throw RPCError(code: .dataLoss, message: "truncated varint")
  }

  mutating func next() throws -> (Int32, Value)? {
    guard offset < bytes.count else { return nil }
    let key = try varint()
    let number = Int32(truncatingIfNeeded: key >> 3)
    switch key & 7 {
    case 0:
      _ = try varint()
      return (number, .varint)
    case 1:
      offset += 8
      return (number, .fixed)
    case 2:
      let length = Int(try varint())
      defer { offset += length }
      return (number, .bytes(Array(bytes[offset..<offset + length])))
    case 5:
      offset += 4
      return (number, .fixed)
    default: throw RPCError(code: .dataLoss, message: "wire type \(key & 7)")
    }
  }
}

/// Responses as one party received them.
actor Received {
  var responses: [(role: Nest_Common_V1_Role, method: String, message: String, bytes: [UInt8])] = []

  func add<M: NestMessage>(_ role: Nest_Common_V1_Role, _ method: String, _ response: M) throws {
    self.responses.append((role, method, M.protoMessageName, try response.serializedBytes()))
  }
}

@Suite("Visibility", .timeLimit(.minutes(5)))
struct VisibilityTests {
  @Test("the walker finds a field its reader may not read, however deep (the check can fail)")
  func walkerFinds() throws {
    let order = Nest_Order_V1_Order.with {
      $0.wholesale = .with { $0.authorizationID = "auth" }
      $0.delivery = .with { $0.lastError = "unavailable: 10.0.0.7:7104 connection refused" }
    }
    let response = Nest_Order_V1_GetOrderResponse.with {
      $0.order = order
      $0.linkedOrders = [order]
    }
    let found = try Schema.contract.unreadable(
      try response.serializedBytes(), as: Nest_Order_V1_GetOrderResponse.protoMessageName, role: .customer)
    #expect(
      found.sorted() == [
        "nest.order.v1.DeliverySummary.last_error at linked_orders.delivery.last_error",
        "nest.order.v1.DeliverySummary.last_error at order.delivery.last_error",
        "nest.order.v1.GetOrderResponse.linked_orders at linked_orders",
        "nest.order.v1.Order.wholesale at linked_orders.wholesale",
        "nest.order.v1.Order.wholesale at order.wholesale",
      ])
    #expect(
      try Schema.contract.unreadable(
        try response.serializedBytes(), as: "nest.order.v1.GetOrderResponse", role: .operator
      ).isEmpty)
  }

  @Test(
    "every response of a full run, to every party, carries only what that party may read", arguments: ScenarioKind.all)
  func walk(_ kind: ScenarioKind) async throws {
    let platform = try await NestTestPlatform.start()
    let marketplace = platform.marketplace
    let parties = ScenarioParties(kind, run: "v")
    let received = Received()
    let setup = try await marketplace.setUp(kind, parties: parties)
    // The customer's own mutating calls.
    let (created, paid) = try await platform.orders(as: .customer, parties.customer) { orders in
      let created = try await orders.createOrder(
        .with {
          $0.productID = setup.productID
          $0.planID = "monthly"
          $0.quantity = 2
          $0.periods = 1
        })
      let paid = try await orders.payOrder(
        .with {
          $0.orderID = created.order!.id
          $0.paymentReference = "psp"
        })
      return (created, paid)
    }
    try await received.add(.customer, "CreateOrder", created)
    try await received.add(.customer, "PayOrder", paid)
    let order = try await marketplace.waitForOrder(created.order!.id)
    let linkedID = order.linkedOrders.first?.id ?? ""
    let instance = try await platform.entitlement(as: .customer, parties.customer) {
      try await $0.getServiceInstance(.with { $0.key = .orderID(created.order!.id) }).instance!
    }
    // A second order, refunded by its seller.
    let second = try await marketplace.buy(parties.customer, product: setup.productID)
    _ = try await marketplace.waitForOrder(second.id)
    let seller: (Nest_Common_V1_Role, String) =
      kind.b == nil ? (.isv, parties.isv) : (.distributor, parties.distributor)
    let refunded = try await platform.orders(as: seller.0, seller.1) {
      try await $0.refundOrder(
        .with {
          $0.orderID = second.id
          $0.reason = "asked"
        })
    }
    try await received.add(seller.0, "RefundOrder", refunded)
    if kind.offline {
      _ = try await marketplace.settleOffline(isv: parties.isv, distributor: parties.distributor, reference: "bank")
    }
    let statement = try await platform.settlement(as: .operator, "op") {
      try await $0.listStatements(.init()).statements.first?.id ?? ""
    }

    let readers: [(Nest_Common_V1_Role, String)] = [
      (.isv, parties.isv), (.distributor, parties.distributor), (.customer, parties.customer), (.operator, "op"),
      (.service, "settlement"), (.service, "marketplace-order"),
    ]
    for (role, subject) in readers {
      // Each read the party may make; one it may not make answers with an error, not a response.
      func read<M: NestMessage>(
        _ service: NestServiceName, _ method: String, _ body: (any ServiceClients) async throws -> M
      ) async {
        do {
          let response = try await platform.withClient(service, token: try await platform.token(role, subject)) {
            try await body($0)
          }
          try await received.add(role, method, response)
        } catch {}
      }
      let serviceIDs = [setup.a.id] + (setup.b.map { [$0.id] } ?? [])
      for id in serviceIDs {
        await read(.catalog, "GetService") { try await $0.catalog.getService(.with { $0.serviceID = id }) }
        await read(.catalog, "ResolveScenario") { try await $0.catalog.resolveScenario(.with { $0.serviceID = id }) }
        await read(.catalog, "GetProduct") { try await $0.catalog.getProduct(.with { $0.key = .serviceID(id) }) }
      }
      await read(.catalog, "ListServices") { try await $0.catalog.listServices(.init()) }
      await read(.catalog, "ListProducts") { try await $0.catalog.listProducts(.init()) }
      if let authorization = setup.authorization {
        await read(.entitlement, "GetDistributionAuthorization") {
          try await $0.entitlement.getDistributionAuthorization(.with { $0.authorizationID = authorization.id })
        }
        await read(.entitlement, "CheckDistribution") {
          try await $0.entitlement.checkDistribution(
            .with {
              $0.baseServiceID = setup.a.id
              $0.distributorID = parties.distributor
            })
        }
      }
      await read(.entitlement, "ListDistributionAuthorizations") {
        try await $0.entitlement.listDistributionAuthorizations(.init())
      }
      await read(.entitlement, "GetServiceInstance") {
        try await $0.entitlement.getServiceInstance(.with { $0.key = .instanceID(instance.id) })
      }
      await read(.entitlement, "ListServiceInstances") { try await $0.entitlement.listServiceInstances(.init()) }
      await read(.entitlement, "ListPermissionRequests") { try await $0.entitlement.listPermissionRequests(.init()) }
      if case .license(let license)? = instance.access {
        await read(.entitlement, "CheckLicense") {
          try await $0.entitlement.checkLicense(.with { $0.license = .licenseID(license.licenseID) })
        }
      }
      for id in [created.order!.id, second.id] + (linkedID.isEmpty ? [] : [linkedID]) {
        await read(.order, "GetOrder") { try await $0.orders.getOrder(.with { $0.orderID = id }) }
      }
      await read(.order, "ListOrders") { try await $0.orders.listOrders(.init()) }
      await read(.order, "ListDeliveries") { try await $0.orders.listDeliveries(.with { $0.includeDelivered = true }) }
      await read(.settlement, "GetBalance") { try await $0.settlement.getBalance(.init()) }
      await read(.settlement, "ListTransactions") { try await $0.settlement.listTransactions(.init()) }
      await read(.settlement, "ListObligations") { try await $0.settlement.listObligations(.init()) }
      await read(.settlement, "ListStatements") { try await $0.settlement.listStatements(.init()) }
      if !statement.isEmpty {
        await read(.settlement, "GetStatement") {
          try await $0.settlement.getStatement(.with { $0.statementID = statement })
        }
      }
      await read(.settlement, "Reconcile") { try await $0.settlement.reconcile(.init()) }
    }

    let responses = await received.responses
    // Each party did get answers: the walk read what each may read.
    for role in [Nest_Common_V1_Role.isv, .distributor, .customer, .operator, .service] {
      #expect(responses.contains { $0.role == role }, "no response to \(role)")
    }
    for response in responses {
      let found = try Schema.contract.unreadable(response.bytes, as: response.message, role: response.role)
      #expect(found.isEmpty, "\(response.method) to \(response.role): \(found)")
    }
    // What a customer must never see, said plainly too.
    #expect(paid.linkedOrders.isEmpty)
    #expect(paid.order?.wholesale == nil)
    #expect(paid.order?.linkedOrderIds.isEmpty == true)
    if kind.online {
      let sellerView = try await platform.orders(as: .distributor, parties.distributor) {
        try await $0.getOrder(.with { $0.orderID = created.order!.id })
      }
      #expect(sellerView.linkedOrders.count == 1)
      #expect(sellerView.order?.wholesale != nil)
    }
    await platform.stop()
  }
}
