// The gate every untrusted byte passes before protobuf-c unpacks it. protobuf-c 1.4 trusts
// its input in three ways that matter here: it recurses once per nesting level with no
// limit (a ~30 KB message nested ~9,000 deep overflows the stack), it allocates structs
// far larger than the bytes that describe them (a 2 MB map of empty entries costs ~80 MB),
// and it copies strings without checking UTF-8. The guard walks the wire format once,
// with the schema, and throws before any of that can happen.
import CProtobufC

enum WireGuard {
  /// Bytes protobuf-c's unpack keeps per field occurrence while parsing a message (its
  /// ScannedMember slabs), on top of the result. The first 16 occurrences of a message live
  /// on the stack; after that slabs of 32, 64, ... members are allocated, never more than
  /// 32 + 2 per occurrence past the 16th.
  private static let scannedMemberBytes = 48
  private static let stackScannedMembers = 16
  /// Rounding per allocation in the arena.
  private static let allocationOverhead = 16

  /// Checks `bytes` as a `descriptor` message and returns the bytes the arena should
  /// reserve for unpacking it.
  static func check(
    _ bytes: UnsafeRawBufferPointer,
    descriptor: UnsafePointer<ProtobufCMessageDescriptor>,
    limits: NestDecodingLimits
  ) throws(NestProtoError) -> Int {
    guard bytes.count <= limits.maxMessageBytes else {
      throw NestProtoError(
        .resourceExhausted,
        "message of \(bytes.count) bytes exceeds the limit of \(limits.maxMessageBytes)")
    }
    var scan = Scan(limits: limits, budget: limits.allocationBudget(forInputBytes: bytes.count))
    try scan.message(bytes, descriptor, depth: 1)
    return scan.estimate
  }

  private struct Scan {
    let limits: NestDecodingLimits
    let budget: Int
    var estimate = 0

    init(limits: NestDecodingLimits, budget: Int) {
      self.limits = limits
      self.budget = budget
    }

    /// Adds an allocation to the estimate. The budget is checked once per message (and
    /// before descending into one), which is enough: the scan itself allocates nothing.
    @inline(__always)
    mutating func charge(_ bytes: Int) {
      self.estimate &+= bytes &+ WireGuard.allocationOverhead
    }

    func checkBudget() throws(NestProtoError) {
      if self.estimate > self.budget {
        throw NestProtoError(
          .resourceExhausted,
          "decoding would allocate more than \(self.budget) bytes")
      }
    }

    mutating func message(
      _ bytes: UnsafeRawBufferPointer,
      _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>,
      depth: Int
    ) throws(NestProtoError) {
      guard depth <= self.limits.maxDepth else {
        throw NestProtoError(
          .invalidArgument, "message nested deeper than \(self.limits.maxDepth) levels")
      }
      self.charge(descriptor.pointee.sizeof_message)
      try self.checkBudget()
      var reader = WireReader(bytes)
      var occurrences = 0
      while !reader.atEnd {
        let tag = try reader.varint()
        let number = tag >> 3
        guard number > 0, number <= 536_870_911 else {
          throw NestProtoError(.invalidArgument, "invalid field number \(number)")
        }
        occurrences += 1
        if occurrences > WireGuard.stackScannedMembers {
          let first = occurrences == WireGuard.stackScannedMembers + 1
          self.charge(WireGuard.scannedMemberBytes * (first ? 34 : 2))
        }
        let field = Self.field(descriptor, UInt32(truncatingIfNeeded: number))
        switch tag & 7 {
        case 0:
          _ = try reader.varint()
          self.chargeElement(field)
        case 1:
          try reader.skip(8)
          self.chargeElement(field)
        case 5:
          try reader.skip(4)
          self.chargeElement(field)
        case 2:
          let payload = try reader.lengthDelimited()
          try self.lengthDelimited(payload, field, depth: depth)
        default:
          // Groups (3, 4) are not in proto3 and protobuf-c cannot keep them; 6 and 7 do not exist.
          throw NestProtoError(.invalidArgument, "unsupported wire type \(tag & 7) for field \(number)")
        }
      }
      try self.checkBudget()
    }

    /// The field with `number`: by index when the message numbers its fields 1...n (most
    /// do), else protobuf-c's search over its number ranges.
    @inline(__always)
    static func field(
      _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>, _ number: UInt32
    ) -> UnsafePointer<ProtobufCFieldDescriptor>? {
      let d = descriptor.pointee
      if d.n_field_ranges == 1, d.field_ranges[0].start_value == 1, number >= 1, number <= d.n_fields {
        return d.fields + Int(number - 1)
      }
      return protobuf_c_message_descriptor_get_field(descriptor, number)
    }

    /// One scalar element: an array slot if the field is repeated, an unknown field if the
    /// schema does not know it.
    @inline(__always)
    mutating func chargeElement(_ field: UnsafePointer<ProtobufCFieldDescriptor>?) {
      guard let field else {
        return self.charge(MemoryLayout<ProtobufCMessageUnknownField>.stride + 8)
      }
      if field.pointee.label == PROTOBUF_C_LABEL_REPEATED {
        self.charge(Self.elementSize(field.pointee.type))
      }
    }

    mutating func lengthDelimited(
      _ payload: UnsafeRawBufferPointer,
      _ field: UnsafePointer<ProtobufCFieldDescriptor>?,
      depth: Int
    ) throws(NestProtoError) {
      guard let field else {
        return self.charge(MemoryLayout<ProtobufCMessageUnknownField>.stride + payload.count)
      }
      let repeated = field.pointee.label == PROTOBUF_C_LABEL_REPEATED
      let pointerSlot = repeated ? MemoryLayout<UnsafeRawPointer>.stride : 0
      switch field.pointee.type {
      case PROTOBUF_C_TYPE_MESSAGE:
        self.charge(pointerSlot)
        let nested = field.pointee.descriptor.assumingMemoryBound(
          to: ProtobufCMessageDescriptor.self)
        try self.message(payload, nested, depth: depth + 1)
      case PROTOBUF_C_TYPE_STRING:
        switch UTF8Validation.check(payload) {
        case .valid: break
        case .invalid:
          throw NestProtoError(
            .invalidArgument,
            "field \(String(cString: field.pointee.name)) is not valid UTF-8")
        case .containsNUL:
          // protobuf-c hands strings to C as NUL-terminated: a NUL inside would cut them.
          throw NestProtoError(
            .invalidArgument,
            "field \(String(cString: field.pointee.name)) contains U+0000")
        }
        self.charge(payload.count + 1 + pointerSlot)
      case PROTOBUF_C_TYPE_BYTES:
        self.charge(payload.count + (repeated ? MemoryLayout<ProtobufCBinaryData>.stride : 0))
      default:
        // A packed repeated scalar: at most one element per byte.
        self.charge(payload.count &* Self.elementSize(field.pointee.type))
      }
    }

    static func elementSize(_ type: ProtobufCType) -> Int {
      switch type {
      case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64,
        PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_FIXED64, PROTOBUF_C_TYPE_DOUBLE:
        8
      case PROTOBUF_C_TYPE_STRING, PROTOBUF_C_TYPE_MESSAGE:
        MemoryLayout<UnsafeRawPointer>.stride
      case PROTOBUF_C_TYPE_BYTES:
        MemoryLayout<ProtobufCBinaryData>.stride
      default:
        4
      }
    }
  }
}

/// Reads the protobuf wire format's primitives, refusing anything that runs past the end.
struct WireReader {
  private var cursor: UnsafeRawPointer
  private let end: UnsafeRawPointer

  init(_ bytes: UnsafeRawBufferPointer) {
    // An empty buffer may have no base address; any non-nil pointer with end == cursor works.
    let base = bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!
    self.cursor = base
    self.end = base + bytes.count
  }

  var atEnd: Bool { self.cursor >= self.end }

  @inline(__always)
  mutating func varint() throws(NestProtoError) -> UInt64 {
    // The common case first: one byte.
    if self.cursor < self.end {
      let byte = self.cursor.load(as: UInt8.self)
      if byte < 0x80 {
        self.cursor += 1
        return UInt64(byte)
      }
    }
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while self.cursor < self.end {
      let byte = self.cursor.load(as: UInt8.self)
      self.cursor += 1
      if shift == 63 && byte > 1 {
        throw NestProtoError(.invalidArgument, "varint longer than 64 bits")
      }
      result |= UInt64(byte & 0x7f) << shift
      if byte & 0x80 == 0 { return result }
      shift += 7
    }
    throw NestProtoError(.invalidArgument, "truncated varint")
  }

  @inline(__always)
  mutating func skip(_ count: Int) throws(NestProtoError) {
    guard self.end - self.cursor >= count else {
      throw NestProtoError(.invalidArgument, "truncated fixed-width field")
    }
    self.cursor += count
  }

  @inline(__always)
  mutating func lengthDelimited() throws(NestProtoError) -> UnsafeRawBufferPointer {
    let length = try self.varint()
    guard length <= UInt64(self.end - self.cursor) else {
      throw NestProtoError(.invalidArgument, "length \(length) runs past the end of the input")
    }
    let start = self.cursor
    self.cursor += Int(length)
    return UnsafeRawBufferPointer(start: start, count: Int(length))
  }
}

/// UTF-8 validation (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF), and
/// NUL detection, in one pass.
enum UTF8Validation {
  enum Result { case valid, invalid, containsNUL }

  static func check(_ bytes: UnsafeRawBufferPointer) -> Result {
    var index = 0
    let count = bytes.count
    while index < count {
      // ASCII runs, eight bytes at a time; a word with a zero byte leaves the fast path.
      while index + 8 <= count {
        let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
        let hasZero = (word &- 0x0101_0101_0101_0101) & ~word & 0x8080_8080_8080_8080
        guard word & 0x8080_8080_8080_8080 == 0, hasZero == 0 else { break }
        index += 8
      }
      guard index < count else { break }
      let lead = bytes[index]
      if lead < 0x80 {
        if lead == 0 { return .containsNUL }
        index += 1
        continue
      }
      let length: Int
      var lowest: UInt8 = 0x80
      var highest: UInt8 = 0xBF
      switch lead {
      case 0xC2...0xDF: length = 2
      case 0xE0: length = 3; lowest = 0xA0
      case 0xE1...0xEC, 0xEE...0xEF: length = 3
      case 0xED: length = 3; highest = 0x9F
      case 0xF0: length = 4; lowest = 0x90
      case 0xF1...0xF3: length = 4
      case 0xF4: length = 4; highest = 0x8F
      default: return .invalid
      }
      guard index + length <= count else { return .invalid }
      let second = bytes[index + 1]
      guard second >= lowest, second <= highest else { return .invalid }
      for offset in 2..<max(2, length) {
        guard bytes[index + offset] & 0xC0 == 0x80 else { return .invalid }
      }
      index += length
    }
    return .valid
  }
}
