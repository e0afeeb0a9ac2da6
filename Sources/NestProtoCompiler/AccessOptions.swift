// The access declarations of nest/access/v1/access.proto, as they reach the generator:
// custom options (extension 51001 of MethodOptions and FieldOptions) that protobuf-c keeps as
// unknown fields of the options message. Decoded here from their wire bytes, so that the
// generator needs no generated code of its own schema.

/// `(nest.access.v1.method)` of one RPC.
public struct MethodAccessDeclaration: Hashable, Sendable {
  public var open = false
  /// nest.common.v1.Role numbers.
  public var roles: [Int32] = []
  public var services: [String] = []
  public var resource = ""
  /// nest.access.v1.Relation number.
  public var relation: Int32 = 0

  public init() {}
}

/// `(nest.access.v1.field)` of one field: the roles that may read it.
public struct FieldAccessDeclaration: Hashable, Sendable {
  public var readers: [Int32] = []

  public init() {}
}

enum AccessOptions {
  /// The extension number of both options.
  static let extensionNumber: UInt32 = 51001

  static func method(_ bytes: [UInt8]) throws -> MethodAccessDeclaration {
    var declaration = MethodAccessDeclaration()
    var reader = WireReader(bytes)
    while let (number, value) = try reader.next() {
      switch (number, value) {
      case (1, .varint(let v)): declaration.open = v != 0
      case (2, _): declaration.roles += try value.varints()
      case (3, .bytes(let b)): declaration.services.append(String(decoding: b, as: UTF8.self))
      case (4, .bytes(let b)): declaration.resource = String(decoding: b, as: UTF8.self)
      case (5, .varint(let v)): declaration.relation = Int32(truncatingIfNeeded: v)
      default: break
      }
    }
    return declaration
  }

  static func field(_ bytes: [UInt8]) throws -> FieldAccessDeclaration {
    var declaration = FieldAccessDeclaration()
    var reader = WireReader(bytes)
    while let (number, value) = try reader.next() {
      if number == 1 { declaration.readers += try value.varints() }
    }
    return declaration
  }
}

/// Just enough of the protobuf wire format for the two option messages.
struct WireReader {
  enum Value {
    case varint(UInt64)
    case bytes([UInt8])
    case fixed

    /// A varint, or a packed run of them.
    func varints() throws -> [Int32] {
      switch self {
      case .varint(let v): return [Int32(truncatingIfNeeded: v)]
      case .bytes(let b):
        var inner = WireReader(b)
        var values: [Int32] = []
        while inner.offset < b.count { values.append(Int32(truncatingIfNeeded: try inner.varint())) }
        return values
      case .fixed: throw DescriptorDecodingError(description: "access option: unexpected fixed-width value")
      }
    }
  }

  let bytes: [UInt8]
  var offset = 0

  init(_ bytes: [UInt8]) { self.bytes = bytes }

  mutating func varint() throws -> UInt64 {
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while offset < bytes.count, shift < 64 {
      let byte = bytes[offset]
      offset += 1
      result |= UInt64(byte & 0x7f) << shift
      if byte & 0x80 == 0 { return result }
      shift += 7
    }
    throw DescriptorDecodingError(description: "access option: truncated varint")
  }

  mutating func next() throws -> (UInt32, Value)? {
    guard offset < bytes.count else { return nil }
    let key = try varint()
    let number = UInt32(truncatingIfNeeded: key >> 3)
    switch key & 7 {
    case 0: return (number, .varint(try varint()))
    case 1:
      offset += 8
      return (number, .fixed)
    case 2:
      let length = Int(try varint())
      guard length >= 0, offset + length <= bytes.count else {
        throw DescriptorDecodingError(description: "access option: truncated field")
      }
      defer { offset += length }
      return (number, .bytes(Array(bytes[offset..<offset + length])))
    case 5:
      offset += 4
      return (number, .fixed)
    default:
      throw DescriptorDecodingError(description: "access option: unsupported wire type \(key & 7)")
    }
  }
}
