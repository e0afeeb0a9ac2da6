// The Swift types' behaviour a service relies on: defaults, recursion, open enums, unknown
// fields kept across a re-encode, canonical maps, and refusals that would otherwise lose data.
import NestProto
import NestProtoRuntime
import NestProtoTesting
import Testing

@Suite("Codec")
struct CodecTests {
  @Test("a default message encodes to no bytes and decodes from none")
  func empty() throws {
    #expect(try Nest_Order_V1_Order().serializedBytes() == [])
    #expect(try Nest_Order_V1_Order(serializedBytes: []) == Nest_Order_V1_Order())
  }

  @Test("a recursive message round-trips through every kind of self-reference")
  func recursive() throws {
    var leaf = Nest_Testing_V1_Node()
    leaf.text = "leaf"
    leaf.payload = .shade(.dark)
    var node = Nest_Testing_V1_Node()
    node.child = leaf
    node.children = [leaf, leaf]
    node.byNumber = [1: leaf, -5: Nest_Testing_V1_Node()]
    node.payload = .nested(leaf)
    let decoded = try Nest_Testing_V1_Node(serializedBytes: node.serializedBytes())
    #expect(decoded == node)
    #expect(decoded.child?.text == "leaf")
    #expect(decoded.byNumber[-5] == Nest_Testing_V1_Node())
  }

  @Test("extremes of every scalar type survive")
  func extremes() throws {
    let value = Nest_Testing_V1_Scalars.with {
      $0.fInt32 = .min
      $0.fInt64 = .min
      $0.fUint32 = .max
      $0.fUint64 = .max
      $0.fSint32 = .min
      $0.fSint64 = .max
      $0.fFixed32 = .max
      $0.fFixed64 = .max
      $0.fSfixed32 = .min
      $0.fSfixed64 = .min
      $0.fFloat = .greatestFiniteMagnitude
      $0.fDouble = -.leastNonzeroMagnitude
      $0.fString = "Ünïcødé ✓ 中文 🚀"
      $0.fBytes = Array(0...255)
      $0.rInt64 = [.min, 0, .max]
      $0.rDouble = [.infinity, -.infinity]
      $0.mShade = [.max: .light, 0: .dark]
      $0.inners = [.with { $0.name = "a" }, .init()]
    }
    #expect(try Nest_Testing_V1_Scalars(serializedBytes: value.serializedBytes()) == value)
  }

  @Test("an enum value this schema does not know is kept, not lost")
  func openEnums() throws {
    let value = Nest_Common_V1_Party.with { $0.role = .init(rawValue: 99) }
    #expect(value.role == .unrecognized(99))
    let decoded = try Nest_Common_V1_Party(serializedBytes: value.serializedBytes())
    #expect(decoded.role.rawValue == 99)
    #expect(Nest_Common_V1_Role.allCases.count == 6)
  }

  @Test("map entries are written sorted by key, so equal values encode equally")
  func canonicalMaps() throws {
    var labels: [String: String] = [:]
    for index in 0..<64 { labels["key-\(index)"] = "\(index)" }
    let first = try Nest_Order_V1_Order.with { $0.labels = labels }.serializedBytes()
    var shuffled: [String: String] = [:]
    for (key, value) in labels.shuffled() { shuffled[key] = value }
    #expect(try Nest_Order_V1_Order.with { $0.labels = shuffled }.serializedBytes() == first)
  }

  @Test("a string with U+0000 is refused rather than cut short by protobuf-c")
  func nulInString() {
    #expect(throws: NestProtoError.self) {
      try Nest_Common_V1_Money.with { $0.currency = "US\u{0}D" }.serializedBytes()
    }
  }

  @Test("a message from a newer schema decodes and re-encodes with its unknown fields intact")
  func forwardCompatibility() throws {
    let newer = Nest_Testing_V1_RecordV2.with {
      $0.id = "r-1"
      $0.amount = -5
      $0.note = "added later ✓"
      $0.codes = [1, -2, 300]
      $0.checksum = .max
      $0.shade = .dark
      $0.previous = .with { $0.id = "r-0" }
      $0.ratio = 0.25
    }
    let older = try Nest_Testing_V1_RecordV1(serializedBytes: newer.serializedBytes())
    #expect(older.id == "r-1")
    #expect(older.amount == -5)
    #expect(older.unknownFields.fields.map(\.tag) == [3, 4, 5, 6, 7, 8])
    // The older service passes the record on; the newer one reads every field back.
    let passedOn = try older.serializedBytes()
    #expect(try Nest_Testing_V1_RecordV2(serializedBytes: passedOn) == newer)
    #expect(passedOn == (try newer.serializedBytes()))
  }

  @Test("a contract message keeps fields a future version adds")
  func forwardCompatibilityOfContract() throws {
    let money = Nest_Common_V1_Money.with {
      $0.currency = "USD"; $0.amountMinor = 1234
    }
    // Field 3 (string "tax"), field 4 (varint 7), as a later Money might carry.
    let future = try money.serializedBytes() + [0x1a, 0x03, 0x74, 0x61, 0x78, 0x20, 0x07]
    let decoded = try Nest_Common_V1_Money(serializedBytes: future)
    #expect(decoded.currency == "USD")
    #expect(decoded.amountMinor == 1234)
    #expect(try decoded.serializedBytes() == future)
  }
}

@Suite("Oneof presence")
struct OneofPresenceTests {
  @Test("a oneof member set to its default value is still set after a round trip")
  func defaultOneofMember() throws {
    let request = Grpc_Reflection_V1_ServerReflectionRequest.with { $0.messageRequest = .listServices("") }
    let bytes = try request.serializedBytes()
    #expect(bytes == [0x3A, 0x00])  // field 7, length 0
    let decoded = try Grpc_Reflection_V1_ServerReflectionRequest(serializedBytes: bytes)
    #expect(decoded.messageRequest == .listServices(""))
  }
}

@Suite("Repeated elements")
struct RepeatedElementTests {
  // Found by scripts/fuzz messages: an empty element of a repeated bytes field was packed
  // with whatever length the encoding arena's memory held.
  @Test("an empty element of a repeated bytes field round-trips as empty")
  func emptyBytesElement() throws {
    let bytes: [UInt8] = [0x0A, 0x00, 0x0A, 0x01, 0x41, 0x0A, 0x00]
    let decoded = try Grpc_Reflection_V1_FileDescriptorResponse(serializedBytes: bytes)
    #expect(decoded.fileDescriptorProto == [[], [0x41], []])
    #expect(try decoded.serializedBytes() == bytes)
  }

  @Test("an empty element of a repeated string field round-trips as empty")
  func emptyStringElement() throws {
    let access = Nest_Access_V1_MethodAccess.with { $0.services = ["", "settlement", ""] }
    let bytes = try access.serializedBytes()
    #expect(bytes == [0x1A, 0x00, 0x1A, 0x0A] + Array("settlement".utf8) + [0x1A, 0x00])
    #expect(try Nest_Access_V1_MethodAccess(serializedBytes: bytes) == access)
  }
}
