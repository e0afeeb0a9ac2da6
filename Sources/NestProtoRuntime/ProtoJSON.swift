// A message as proto3 JSON (the canonical mapping of protobuf's JSON format): read from the
// protobuf-c message the encoder builds, field by field through its descriptor, so that
// every generated message has it without generated code. Field names are lowerCamelCase;
// fields at their default are left out; 64-bit integers are strings; enums are their value
// names; bytes are base64; maps are objects. For what leaves the platform as JSON (webhook
// payloads); nothing here reads JSON.
public import CProtobufC

extension NestMessage {
  /// This message as proto3 JSON, UTF-8.
  public func jsonUTF8() throws(NestProtoError) -> [UInt8] {
    try self.withPackedMessage { message in
      var writer = ProtoJSONWriter()
      writer.message(UnsafeRawPointer(message), message.pointee.descriptor)
      return writer.bytes
    }
  }

  /// This message as proto3 JSON text.
  public func jsonString() throws(NestProtoError) -> String {
    String(decoding: try self.jsonUTF8(), as: UTF8.self)
  }
}

struct ProtoJSONWriter {
  var bytes: [UInt8] = []

  mutating func message(_ base: UnsafeRawPointer, _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>) {
    self.bytes.append(UInt8(ascii: "{"))
    var first = true
    for index in 0..<Int(descriptor.pointee.n_fields) {
      let field = descriptor.pointee.fields[index]
      guard Self.isPresent(base, field) else { continue }
      if !first { self.bytes.append(UInt8(ascii: ",")) }
      first = false
      self.string(Self.jsonName(String(cString: field.name)))
      self.bytes.append(UInt8(ascii: ":"))
      if field.label == PROTOBUF_C_LABEL_REPEATED {
        self.repeated(base, field)
      } else {
        self.value(base + Int(field.offset), field)
      }
    }
    self.bytes.append(UInt8(ascii: "}"))
  }

  /// proto3 JSON's default field name: `created_at_unix_ms` is `createdAtUnixMs`.
  static func jsonName(_ name: String) -> String {
    var result = ""
    var upper = false
    for character in name {
      if character == "_" {
        upper = true
      } else {
        result.append(upper ? Character(character.uppercased()) : character)
        upper = false
      }
    }
    return result
  }

  /// Whether the field is written: set in its oneof, has its presence bit, or differs from
  /// its default (implicit presence); a repeated field when it has elements.
  static func isPresent(_ base: UnsafeRawPointer, _ field: ProtobufCFieldDescriptor) -> Bool {
    let value = base + Int(field.offset)
    if field.flags & UInt32(PROTOBUF_C_FIELD_FLAG_ONEOF.rawValue) != 0 {
      return base.loadUnaligned(fromByteOffset: Int(field.quantifier_offset), as: UInt32.self) == field.id
    }
    switch field.label {
    case PROTOBUF_C_LABEL_REPEATED:
      return base.loadUnaligned(fromByteOffset: Int(field.quantifier_offset), as: Int.self) > 0
    case PROTOBUF_C_LABEL_OPTIONAL where field.type != PROTOBUF_C_TYPE_MESSAGE && field.type != PROTOBUF_C_TYPE_STRING:
      return base.loadUnaligned(fromByteOffset: Int(field.quantifier_offset), as: Int32.self) != 0
    default:
      break
    }
    switch field.type {
    case PROTOBUF_C_TYPE_MESSAGE:
      return value.load(as: UnsafeRawPointer?.self) != nil
    case PROTOBUF_C_TYPE_STRING:
      guard let chars = value.load(as: UnsafePointer<CChar>?.self) else { return false }
      return field.label == PROTOBUF_C_LABEL_OPTIONAL || chars.pointee != 0
    case PROTOBUF_C_TYPE_BYTES:
      return value.loadUnaligned(as: ProtobufCBinaryData.self).len > 0
    case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64, PROTOBUF_C_TYPE_UINT64,
      PROTOBUF_C_TYPE_FIXED64, PROTOBUF_C_TYPE_DOUBLE:
      return value.loadUnaligned(as: UInt64.self) != 0
    default:  // 32-bit scalars, bool and enums are int-sized
      return value.loadUnaligned(as: UInt32.self) != 0
    }
  }

  mutating func repeated(_ base: UnsafeRawPointer, _ field: ProtobufCFieldDescriptor) {
    let count = base.loadUnaligned(fromByteOffset: Int(field.quantifier_offset), as: Int.self)
    guard let array = (base + Int(field.offset)).load(as: UnsafeRawPointer?.self) else {
      self.bytes.append(contentsOf: Array("[]".utf8))
      return
    }
    if field.type == PROTOBUF_C_TYPE_MESSAGE, let entry = Self.mapEntry(field) {
      // A map: an object of key to value, keys as JSON strings.
      self.bytes.append(UInt8(ascii: "{"))
      for index in 0..<count {
        if index > 0 { self.bytes.append(UInt8(ascii: ",")) }
        let element = array.load(
          fromByteOffset: index * MemoryLayout<UnsafeRawPointer>.stride, as: UnsafeRawPointer.self)
        let key = entry.pointee.fields[0]
        var keyText = ProtoJSONWriter()
        keyText.value(element + Int(key.offset), key)
        if key.type == PROTOBUF_C_TYPE_STRING {
          self.bytes.append(contentsOf: keyText.bytes)
        } else {
          self.string(String(decoding: keyText.bytes.filter { $0 != UInt8(ascii: "\"") }, as: UTF8.self))
        }
        self.bytes.append(UInt8(ascii: ":"))
        let value = entry.pointee.fields[1]
        self.value(element + Int(value.offset), value)
      }
      self.bytes.append(UInt8(ascii: "}"))
      return
    }
    let stride = Self.stride(of: field.type)
    self.bytes.append(UInt8(ascii: "["))
    for index in 0..<count {
      if index > 0 { self.bytes.append(UInt8(ascii: ",")) }
      self.value(array + index * stride, field)
    }
    self.bytes.append(UInt8(ascii: "]"))
  }

  /// The entry descriptor when `field` is a map (protoc's `<Name>Entry` of key 1, value 2).
  static func mapEntry(_ field: ProtobufCFieldDescriptor) -> UnsafePointer<ProtobufCMessageDescriptor>? {
    guard let pointer = field.descriptor else { return nil }
    let entry = pointer.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
    guard entry.pointee.n_fields == 2, String(cString: entry.pointee.short_name).hasSuffix("Entry"),
      String(cString: entry.pointee.fields[0].name) == "key", String(cString: entry.pointee.fields[1].name) == "value"
    else { return nil }
    return entry
  }

  static func stride(of type: ProtobufCType) -> Int {
    switch type {
    case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64, PROTOBUF_C_TYPE_UINT64,
      PROTOBUF_C_TYPE_FIXED64, PROTOBUF_C_TYPE_DOUBLE:
      8
    case PROTOBUF_C_TYPE_STRING, PROTOBUF_C_TYPE_MESSAGE: MemoryLayout<UnsafeRawPointer>.stride
    case PROTOBUF_C_TYPE_BYTES: MemoryLayout<ProtobufCBinaryData>.stride
    default: 4
    }
  }

  /// One value of `field`'s type at `value`.
  mutating func value(_ value: UnsafeRawPointer, _ field: ProtobufCFieldDescriptor) {
    switch field.type {
    case PROTOBUF_C_TYPE_INT32, PROTOBUF_C_TYPE_SINT32, PROTOBUF_C_TYPE_SFIXED32:
      self.bytes.append(contentsOf: Array(String(value.loadUnaligned(as: Int32.self)).utf8))
    case PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_TYPE_FIXED32:
      self.bytes.append(contentsOf: Array(String(value.loadUnaligned(as: UInt32.self)).utf8))
    case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64:
      self.string(String(value.loadUnaligned(as: Int64.self)))
    case PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_FIXED64:
      self.string(String(value.loadUnaligned(as: UInt64.self)))
    case PROTOBUF_C_TYPE_FLOAT:
      self.number(Double(value.loadUnaligned(as: Float.self)))
    case PROTOBUF_C_TYPE_DOUBLE:
      self.number(value.loadUnaligned(as: Double.self))
    case PROTOBUF_C_TYPE_BOOL:
      self.bytes.append(contentsOf: Array((value.loadUnaligned(as: Int32.self) != 0 ? "true" : "false").utf8))
    case PROTOBUF_C_TYPE_ENUM:
      let number = value.loadUnaligned(as: Int32.self)
      let descriptor = field.descriptor?.assumingMemoryBound(to: ProtobufCEnumDescriptor.self)
      if let descriptor, let known = protobuf_c_enum_descriptor_get_value(descriptor, number) {
        self.string(String(cString: known.pointee.name))
      } else {
        self.bytes.append(contentsOf: Array(String(number).utf8))
      }
    case PROTOBUF_C_TYPE_STRING:
      let chars = value.load(as: UnsafePointer<CChar>?.self)
      self.string(chars.map { String(cString: $0) } ?? "")
    case PROTOBUF_C_TYPE_BYTES:
      let data = value.loadUnaligned(as: ProtobufCBinaryData.self)
      let raw = data.data.map { Array(UnsafeBufferPointer(start: $0, count: data.len)) } ?? []
      self.string(Self.base64(raw))
    case PROTOBUF_C_TYPE_MESSAGE:
      guard let message = value.load(as: UnsafeRawPointer?.self) else {
        self.bytes.append(contentsOf: Array("null".utf8))
        return
      }
      let descriptor = message.load(as: UnsafePointer<ProtobufCMessageDescriptor>.self)
      self.message(message, descriptor)
    default:
      self.bytes.append(contentsOf: Array("null".utf8))
    }
  }

  mutating func number(_ value: Double) {
    if value.isNaN {
      self.string("NaN")
    } else if value.isInfinite {
      self.string(value < 0 ? "-Infinity" : "Infinity")
    } else if value == value.rounded(), abs(value) < 1e15 {
      self.bytes.append(contentsOf: Array(String(Int64(value)).utf8))
    } else {
      self.bytes.append(contentsOf: Array("\(value)".utf8))
    }
  }

  /// A JSON string: quotes, backslashes and control characters escaped; the rest as UTF-8.
  mutating func string(_ text: String) {
    JSONText.appendString(text, to: &self.bytes)
  }

  /// Standard base64 with padding, as proto3 JSON writes bytes.
  static func base64(_ bytes: [UInt8]) -> String {
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var out: [UInt8] = []
    out.reserveCapacity((bytes.count + 2) / 3 * 4)
    var index = 0
    while index < bytes.count {
      let chunk = bytes[index..<min(index + 3, bytes.count)]
      let b0 = chunk[chunk.startIndex]
      let b1 = chunk.count > 1 ? chunk[chunk.startIndex + 1] : 0
      let b2 = chunk.count > 2 ? chunk[chunk.startIndex + 2] : 0
      out.append(alphabet[Int(b0 >> 2)])
      out.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
      out.append(chunk.count > 1 ? alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
      out.append(chunk.count > 2 ? alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
      index += 3
    }
    return String(decoding: out, as: UTF8.self)
  }
}

/// JSON text written byte by byte: what leaves the platform as JSON, and the JSON SQLite reads
/// (a store's list of ids).
public enum JSONText {
  /// `text` as a JSON string: quotes, backslashes and control characters escaped; the rest as
  /// UTF-8.
  public static func appendString(_ text: String, to bytes: inout [UInt8]) {
    bytes.append(UInt8(ascii: "\""))
    for byte in text.utf8 {
      switch byte {
      case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
      case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
      case 0x0A: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
      case 0x0D: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
      case 0x09: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
      case 0..<0x20:
        bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
        bytes.append(Self.hexDigits[Int(byte >> 4)])
        bytes.append(Self.hexDigits[Int(byte & 0xF)])
      default: bytes.append(byte)
      }
    }
    bytes.append(UInt8(ascii: "\""))
  }

  private static let hexDigits = Array("0123456789abcdef".utf8)
}
