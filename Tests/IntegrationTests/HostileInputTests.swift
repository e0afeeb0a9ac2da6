// Hostile input at every service port (docs/design.md §3's rules, issue 8): oversized and
// garbage frames, half frames held open, a flood of connections past the limit, 10,000
// calls at once, oversized payloads, invalid UTF-8, forged, expired and wrong-role tokens,
// other parties' ids. Each gets its documented status; every service stays up with bounded
// memory, and what it stored before is unchanged.
import Foundation
import GRPCCore
import NestAuth
import NestProto
import NestProtoTesting
import NestScenarios
import NestServiceKit
import NestTransport
import Testing

/// The resident memory of a process, in KiB.
func residentKiB(_ pid: Int32) -> Int {
  guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
    let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
  else { return 0 }
  return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
}

/// A REQUEST frame as a client would send it.
func request(_ id: UInt64, _ method: String, token: String?, payload: [UInt8] = []) -> Nest_Wire_V1_Frame {
  .with {
    $0.callID = id
    $0.kind = .request
    $0.method = method
    if let token {
      $0.metadata = [
        .with {
          $0.key = "authorization"
          $0.value = .text("Bearer \(token)")
        }
      ]
    }
    $0.payload = payload
  }
}

/// One list method per service, callable by an operator.
let probes: [String: String] = [
  "catalog": "/nest.catalog.v1.CatalogService/ListServices",
  "entitlement": "/nest.entitlement.v1.EntitlementService/ListDistributionAuthorizations",
  "order": "/nest.order.v1.MarketplaceOrderService/ListOrders",
  "settlement": "/nest.settlement.v1.SettlementService/ListObligations",
]

@Suite("Hostile input at every service port", .serialized, .timeLimit(.minutes(3)))
struct HostileInputTests {
  static let connectionLimit = 32

  /// What an operator sees of every service's data: must not change under attack.
  func fingerprint(_ cluster: ServiceCluster) async throws -> [String] {
    [
      "\(try await catalog(cluster, as: .operator, "op") { try await $0.listServices(.init()).services })",
      "\(try await orders(cluster, as: .operator, "op") { try await $0.listOrders(.init()).orders.map(\.id) })",
      "\(try await entitlement(cluster, as: .operator, "op") { try await $0.listServiceInstances(.init()).instances.map(\.id) })",
      "\(try await settlement(cluster, as: .operator, "op") { try await $0.reconcile(.init()).sums })",
    ]
  }

  @Test("every port answers each attack with its documented status and stays up, bounded and unchanged")
  func attacks() async throws {
    let limit = ["--max-connections", "\(Self.connectionLimit)"]
    let cluster = try ServiceCluster(
      extraArguments: ["catalog": limit, "entitlement": limit, "order": limit, "settlement": limit])
    defer { cluster.stopAll() }
    try await cluster.start(["catalog", "entitlement", "settlement", "order"])
    // Something stored beforehand: a scenario-3 sale, settled.
    let setup = Setup(name: "h3", aType: .fullyManaged, aListed: true, bType: .fullyManaged, scenario: .scenario3)
    let (product, _) = try await prepare(cluster, setup)
    _ = try await buy(cluster, setup, product: product)
    let before = try await self.fingerprint(cluster)
    let tokens = try await NestTokens(secret: cluster.secret)
    let operatorToken = try await tokens.sign(subject: "op", role: .operator)
    let forged = try await NestTokens(secret: String(repeating: "f", count: 40)).sign(subject: "op", role: .operator)
    let expired = try await tokens.sign(subject: "op", role: .operator, lifetime: .seconds(-60))
    let customerToken = try await tokens.sign(subject: setup.customer, role: .customer)
    let strangerToken = try await tokens.sign(subject: "cust-stranger", role: .customer)
    var memory: [String: Int] = [:]
    for name in probes.keys { memory[name] = residentKiB(cluster.pid(name)) }

    for (name, probe) in probes.sorted(by: { $0.key < $1.key }) {
      let port = cluster.ports[name]!
      let hello = Nest_Wire_V1_Frame.hello(peer: "hostile/0", maxFrameBytes: 4 << 20)

      // A length over the limit: GOAWAY RESOURCE_EXHAUSTED before any body is read.
      let oversized = try RawConnection(port: port)
      await oversized.write(try hello.lengthPrefixed())
      _ = try await oversized.nextFrame()  // the server's HELLO
      await oversized.write([0xFF, 0xFF, 0xFF, 0xF0, 1, 2, 3])
      #expect(try await oversized.nextFrame()?.status?.code == 8, "\(name): oversized")
      #expect(try await oversized.nextFrame() == nil, "\(name): closed after GOAWAY")

      // Garbage where a frame should be, and a first frame that is not HELLO: INVALID_ARGUMENT.
      let garbage = try RawConnection(port: port)
      await garbage.write([0, 0, 0, 6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
      #expect(try await garbage.nextFrame()?.status?.code == 3, "\(name): garbage")
      let noHello = try RawConnection(port: port)
      await noHello.write(try request(1, probe, token: operatorToken).lengthPrefixed())
      #expect(try await noHello.nextFrame()?.status?.code == 3, "\(name): no HELLO")

      // Half frames held open do not block anyone; a flood past the limit is refused.
      var held: [RawConnection] = []
      for _ in 0..<(Self.connectionLimit - 4) {
        let half = try RawConnection(port: port)
        await half.write([0, 0])
        held.append(half)
      }
      var refused = 0
      for _ in 0..<12 {
        let extra = try RawConnection(port: port)
        await extra.write(try hello.lengthPrefixed())
        var frame = try await extra.nextFrame()
        if frame?.kind == .hello {
          frame = nil
        } else if frame?.kind == .goaway, frame?.status?.code == 8 {
          refused += 1
        }
        held.append(extra)
      }
      #expect(refused >= 8, "\(name): \(refused) of 12 connections past the limit refused")
      held.removeAll()  // closes them all
      #expect(
        try await eventually {
          (try? await calling(cluster, name, probe, token: operatorToken)) != nil
        }, "\(name): a well-behaved client is served again")

      // 10,000 calls at once on one connection: each answered, OK or RESOURCE_EXHAUSTED.
      let busy = try await greeted(port: port, hello: hello)
      var burst: [UInt8] = []
      for id in 1...10_000 { burst += try request(UInt64(id), probe, token: operatorToken).lengthPrefixed() }
      let sender = Task { await busy.write(burst) }  // read while writing: neither side stalls
      var codes: [Int32: Int] = [:]
      for _ in 1...10_000 {
        guard let frame = try await busy.nextFrame() else { break }
        codes[frame.status?.code ?? 0, default: 0] += 1
      }
      await sender.value
      #expect(codes.values.reduce(0, +) == 10_000, "\(name): \(codes)")
      #expect(Set(codes.keys).isSubset(of: [0, 8]), "\(name): \(codes)")

      // Payloads: over the frame limit, not the method's message, invalid UTF-8; tokens.
      let calls = try await greeted(port: port, hello: hello)
      let invalidUTF8: [UInt8] = [0x12, 0x02, 0xC3, 0x28]  // field 2 (a string in every probe's request)
      let deeplyNested = [UInt8](repeating: 0x0B, count: 10_000) + [UInt8](repeating: 0x0C, count: 10_000)
      let cases: [(String, Nest_Wire_V1_Frame, Int32)] = [
        ("not the request message", request(1, probe, token: operatorToken, payload: [0x0A, 0xFF]), 3),
        ("invalid UTF-8", request(2, probe, token: operatorToken, payload: invalidUTF8), 3),
        ("no token", request(3, probe, token: nil), 16),
        ("forged token", request(4, probe, token: forged), 16),
        ("expired token", request(5, probe, token: expired), 16),
        ("unknown method", request(6, "/nest.catalog.v1.CatalogService/DropTables", token: operatorToken), 12),
        // 10,000 nested groups: refused before protobuf-c could recurse into them.
        (
          "deeply nested", request(8, probe, token: operatorToken, payload: deeplyNested), 3
        ),
      ]
      for (what, frame, code) in cases {
        await calls.write(try frame.lengthPrefixed())
        #expect(try await calls.nextFrame()?.status?.code == code, "\(name): \(what)")
      }
      let huge = request(7, probe, token: operatorToken, payload: [UInt8](repeating: 0x41, count: 5 << 20))
      await calls.write(try huge.lengthPrefixed())
      #expect(try await calls.nextFrame()?.status?.code == 8, "\(name): a 5 MiB payload")
      #expect(await Readiness.waitUntilServing(.init(host: "127.0.0.1", port: port)), "\(name) is up")
    }

    // Wrong role and another party's order.
    let paid = try await orders(cluster, as: .customer, setup.customer) { try await $0.listOrders(.init()).orders }
    let wrongRole = await status {
      _ = try await catalog(cluster, as: .customer, setup.customer) {
        try await $0.createService(
          .with {
            $0.name = "x"; $0.type = .private
          })
      }
    }
    #expect(wrongRole == .permissionDenied)
    let strangers = await status {
      _ = try await orders(cluster, as: .customer, "cust-stranger") {
        try await $0.getOrder(.with { $0.orderID = paid[0].id })
      }
    }
    #expect(strangers == .notFound)
    _ = (customerToken, strangerToken)

    #expect(try await self.fingerprint(cluster) == before)
    for name in probes.keys {
      let growth = residentKiB(cluster.pid(name)) - memory[name]!
      #expect(growth < 96 * 1024, "\(name) grew by \(growth) KiB")
    }
  }
}

/// A raw connection the server has answered with HELLO: until the connections of an earlier
/// flood are gone, a new one may still be refused at the limit.
func greeted(port: Int, hello: Nest_Wire_V1_Frame) async throws -> RawConnection {
  let deadline = ContinuousClock.now + .seconds(20)
  while true {
    let connection = try RawConnection(port: port)
    await connection.write(try hello.lengthPrefixed())
    if try await connection.nextFrame()?.kind == .hello || ContinuousClock.now > deadline { return connection }
    try await Task.sleep(for: .milliseconds(50))
  }
}

/// One unary call of `method` on `service` with `token`; the raw response bytes.
func calling(_ cluster: ServiceCluster, _ service: String, _ method: String, token: String) async throws -> [UInt8] {
  let parts = method.split(separator: "/").map(String.init)
  return try await withGRPCClient(
    transport: NestClientTransport(.init(port: cluster.ports[service]!, peerName: "test")),
    interceptors: [BearerTokenClientInterceptor(token: token)]
  ) { client in
    try await client.unaryRaw(MethodDescriptor(fullyQualifiedService: parts[0], method: parts[1]), [])
  }
}
