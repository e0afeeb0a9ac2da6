// Untrusted bytes: each kind of hostile input gives its documented error, never a crash,
// and costs bounded memory. protobuf-c 1.4 on its own would overflow the stack on the
// nesting bomb and allocate ~80 MB for the map bomb.
import Foundation
import GRPCCore
import NestProto
import NestProtoRuntime
import NestProtoTesting
import Testing

private func varint(_ value: Int) -> [UInt8] {
  var value = UInt64(value)
  var bytes: [UInt8] = []
  repeat {
    bytes.append(UInt8(value & 0x7f) | (value > 0x7f ? 0x80 : 0))
    value >>= 7
  } while value > 0
  return bytes
}

/// A Node nested `depth` levels through field 1 (`child`).
private func nestedNode(depth: Int) -> [UInt8] {
  var bytes: [UInt8] = []
  for _ in 0..<depth {
    bytes = [0x0a] + varint(bytes.count) + bytes
  }
  return bytes
}

private func decodeError<M: NestMessage>(_ type: M.Type, _ bytes: [UInt8]) -> NestProtoError? {
  do {
    _ = try M(serializedBytes: bytes)
    return nil
  } catch {
    return error
  }
}

/// `count` bytes of empty `labels` entries (field 3): 2 bytes each on the wire, ~50 once
/// protobuf-c has unpacked them.
private func mapBombBytes(_ count: Int) -> [UInt8] {
  var bytes: [UInt8] = []
  bytes.reserveCapacity(count)
  for _ in 0..<(count / 2) { bytes += [0x1a, 0x00] }
  return bytes
}

private func peakResidentBytes() -> Int {
  var usage = rusage()
  getrusage(RUSAGE_SELF.rawValue, &usage)
  return usage.ru_maxrss * 1024
}

@Suite("Hostile input")
struct HostileInputTests {
  @Test("10,000-deep nesting is refused before protobuf-c recurses")
  func nestingBomb() throws {
    let bomb = nestedNode(depth: 10_000)
    #expect(bomb.count > 30_000)
    let error = decodeError(Nest_Testing_V1_Node.self, bomb)
    #expect(error?.code == .invalidArgument)
    #expect(error?.message.contains("nested deeper") == true)
  }

  @Test("nesting within the limit decodes")
  func nestingWithinLimit() throws {
    var node = try Nest_Testing_V1_Node(serializedBytes: nestedNode(depth: 60))
    var depth = 1
    while let child = node.child {
      node = child
      depth += 1
    }
    #expect(depth == 61)  // the message itself and its 60 levels of children
  }

  @Test("a 2 MB map of empty entries is refused with bounded memory")
  func mapBomb() throws {
    let bomb = mapBombBytes(2 << 20)
    let before = peakResidentBytes()
    for _ in 0..<10 {
      let error = decodeError(Nest_Testing_V1_Node.self, bomb)
      #expect(error?.code == .resourceExhausted)
    }
    let growth = peakResidentBytes() - before
    #expect(growth < 48 << 20, "peak memory grew by \(growth >> 20) MiB")
  }

  @Test("one thread's arena, reused message after message, keeps each one's budget and bytes apart")
  func reusedArena() throws {
    // One synchronous run: every encode and decode below reuses this thread's spare arena.
    let small = Nest_Testing_V1_Node.with { $0.text = "small" }
    let large = Nest_Testing_V1_Node.with { node in
      node.labels = Dictionary(
        uniqueKeysWithValues: (0..<5_000).map { ("label-\($0)", String(repeating: "v", count: 32)) })
    }
    let bomb = mapBombBytes(1 << 20)
    for _ in 0..<3 {
      // A message larger than the arena a thread keeps, then a small one in what is kept.
      #expect(try Nest_Testing_V1_Node(serializedBytes: large.serializedBytes()) == large)
      #expect(try Nest_Testing_V1_Node(serializedBytes: small.serializedBytes()) == small)
      // A refused decode leaves the arena to the next message with that message's budget.
      #expect(decodeError(Nest_Testing_V1_Node.self, bomb)?.code == .resourceExhausted)
      #expect(try Nest_Testing_V1_Node(serializedBytes: small.serializedBytes()) == small)
    }
    // Encoding into the caller's memory gives the same bytes.
    let bytes = try large.serialize { size, write in
      [UInt8](unsafeUninitializedCapacity: size) { buffer, count in count = write(buffer.baseAddress!) }
    }
    #expect(bytes == (try large.serializedBytes()))
  }

  @Test("honest maps and packed numbers of the same size decode")
  func honestLargeMessage() throws {
    var labels: [String: String] = [:]
    for index in 0..<20_000 { labels["label-\(index)"] = String(repeating: "v", count: 64) }
    let node = Nest_Testing_V1_Node.with { $0.labels = labels }
    #expect(try Nest_Testing_V1_Node(serializedBytes: node.serializedBytes()) == node)
    let packed = Nest_Testing_V1_Scalars.with { $0.rInt64 = Array(repeating: 1, count: 500_000) }
    #expect(try Nest_Testing_V1_Scalars(serializedBytes: packed.serializedBytes()) == packed)
  }

  @Test(
    "invalid UTF-8 in a string field is refused",
    arguments: [
      [0xC3, 0x28],  // a lead byte without its continuation
      [0xC0, 0x80],  // overlong NUL
      [0xED, 0xA0, 0x80],  // a UTF-16 surrogate
      [0xF4, 0x90, 0x80, 0x80],  // above U+10FFFF
      [0xFF],
      [0x61, 0x00, 0x62],  // NUL, which protobuf-c's C strings would cut
    ] as [[UInt8]])
  func invalidUTF8(_ string: [UInt8]) {
    let bytes = [0x0a, UInt8(string.count)] + string
    #expect(decodeError(Nest_Common_V1_Money.self, bytes)?.code == .invalidArgument)
  }

  @Test("invalid UTF-8 inside a bytes field is fine")
  func bytesAreNotText() throws {
    let value = try Nest_Testing_V1_Scalars(serializedBytes: [0x7a, 0x02, 0xC3, 0x28])
    #expect(value.fBytes == [0xC3, 0x28])
  }

  @Test(
    "malformed input is refused as INVALID_ARGUMENT",
    arguments: [
      ("truncated varint", [0x10, 0xff]),
      ("length past the end", [0x0a, 0x10, 0x41]),
      ("wrong wire type for a string", [0x0d, 0x01, 0x02, 0x03, 0x04]),
      ("field number zero", [0x00, 0x01]),
      ("group wire type", [0x0b, 0x0c]),
      ("wire type 7", [0x0f]),
      ("varint over 64 bits", [0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
      ("truncated fixed64", [0x11, 0x01, 0x02]),
    ] as [(String, [UInt8])])
  func malformed(_ name: String, _ bytes: [UInt8]) {
    #expect(decodeError(Nest_Common_V1_Money.self, bytes)?.code == .invalidArgument, "\(name)")
  }

  @Test("every prefix of a real message decodes or throws, never crashes")
  func truncations() throws {
    let sample = GoldenSample.all.first { $0.messageName == "nest.order.v1.Order" }!
    var refused = 0
    for length in 0..<sample.binary.count {
      if decodeError(Nest_Order_V1_Order.self, Array(sample.binary[..<length])) != nil { refused += 1 }
    }
    #expect(refused > sample.binary.count / 2)
  }

  @Test("input over the size cap is refused before it is read")
  func oversized() {
    let limits = NestDecodingLimits(maxMessageBytes: 1024)
    let bytes = [UInt8](repeating: 0x08, count: 1025)
    #expect(throws: NestProtoError(.resourceExhausted, "message of 1025 bytes exceeds the limit of 1024")) {
      _ = try Nest_Common_V1_Money(serializedBytes: bytes, limits: limits)
    }
  }

  @Test("the GRPCCore deserializer turns refusals into RPC status codes")
  func rpcCodes() throws {
    let deserializer = NestProtoDeserializer<Nest_Testing_V1_Node>()
    do {
      let decoded: Nest_Testing_V1_Node = try deserializer.deserialize(nestedNode(depth: 200))
      Issue.record("the nesting bomb decoded: \(decoded.text)")
    } catch let error as RPCError {
      #expect(error.code == .invalidArgument)
    }
    do {
      let decoded: Nest_Testing_V1_Node = try deserializer.deserialize(mapBombBytes(1 << 20))
      _ = decoded
      Issue.record("the map bomb decoded")
    } catch let error as RPCError {
      #expect(error.code == .resourceExhausted)
    }
    let value = Nest_Testing_V1_Node.with { $0.text = "ok" }
    let bytes: [UInt8] = try NestProtoSerializer<Nest_Testing_V1_Node>().serialize(value)
    #expect(try deserializer.deserialize(bytes) == value)
  }

  @Test("the largest pages the services send (500 items) decode within the default budget")
  func fullPages() throws {
    let transaction = Nest_Settlement_V1_LedgerTransaction.with {
      $0.id = "txn_0123456789abcdef0123"
      $0.kind = .sale
      $0.source = .orderID("ord_0123456789abcdef0123")
      $0.postings = (0..<3).map { index in
        .with {
          $0.account = .with {
            $0.kind = .customer
            $0.accountID = "c\(index)"
          }
          $0.amount = .with {
            $0.currency = "USD"
            $0.amountMinor = 1
          }
          $0.memo = "m"
        }
      }
      $0.createdAtUnixMs = 1
    }
    let transactions = Nest_Settlement_V1_ListTransactionsResponse.with {
      $0.transactions = Array(repeating: transaction, count: 500)
    }
    let bytes: [UInt8] = try NestProtoSerializer<Nest_Settlement_V1_ListTransactionsResponse>().serialize(
      transactions)
    let decoded: Nest_Settlement_V1_ListTransactionsResponse =
      try NestProtoDeserializer<Nest_Settlement_V1_ListTransactionsResponse>().deserialize(bytes)
    #expect(decoded == transactions)

    let order = try Nest_Order_V1_Order(
      serializedBytes: Array(Data(contentsOf: Repository.path("Tests/Golden/nest.order.v1.Order.binpb"))))
    let orders = Nest_Order_V1_ListOrdersResponse.with { $0.orders = Array(repeating: order, count: 500) }
    let orderBytes: [UInt8] = try NestProtoSerializer<Nest_Order_V1_ListOrdersResponse>().serialize(orders)
    let decodedOrders: Nest_Order_V1_ListOrdersResponse =
      try NestProtoDeserializer<Nest_Order_V1_ListOrdersResponse>().deserialize(orderBytes)
    #expect(decodedOrders == orders)
  }
}
