// How generated code reads and writes protobuf-c messages: by field index into the
// message's protobuf-c descriptor (fields sorted by number, as protoc-c emits them), at the
// offsets protoc-c recorded. Generated code never sees a pointer; this file is where they are.
public import CProtobufC

/// A scalar as protobuf-c stores it in a message struct.
public protocol NestCScalar: Sendable, Hashable {
  @inlinable static func _load(from pointer: UnsafeRawPointer) -> Self
  @inlinable func _store(to pointer: UnsafeMutableRawPointer)
  /// Bytes per element in a repeated field's C array.
  static var _stride: Int { get }
}

extension NestCScalar where Self: BitwiseCopyable {
  @inlinable public static func _load(from pointer: UnsafeRawPointer) -> Self {
    pointer.loadUnaligned(as: Self.self)
  }
  @inlinable public func _store(to pointer: UnsafeMutableRawPointer) {
    pointer.storeBytes(of: self, as: Self.self)
  }
  @inlinable public static var _stride: Int { MemoryLayout<Self>.stride }
}

extension Int32: NestCScalar {}
extension Int64: NestCScalar {}
extension UInt32: NestCScalar {}
extension UInt64: NestCScalar {}
extension Float: NestCScalar {}
extension Double: NestCScalar {}

// protobuf_c_boolean is a C int.
extension Bool: NestCScalar {
  @inlinable public static func _load(from pointer: UnsafeRawPointer) -> Bool {
    pointer.loadUnaligned(as: Int32.self) != 0
  }
  @inlinable public func _store(to pointer: UnsafeMutableRawPointer) {
    pointer.storeBytes(of: self ? 1 : 0, as: Int32.self)
  }
  @inlinable public static var _stride: Int { MemoryLayout<Int32>.stride }
}

// protoc-c declares every enum int-sized.
extension NestEnum {
  @inlinable public static func _load(from pointer: UnsafeRawPointer) -> Self {
    Self(rawValue: pointer.loadUnaligned(as: Int32.self))
  }
  @inlinable public func _store(to pointer: UnsafeMutableRawPointer) {
    pointer.storeBytes(of: self.rawValue, as: Int32.self)
  }
  @inlinable public static var _stride: Int { MemoryLayout<Int32>.stride }
}

/// Reads one unpacked protobuf-c message. For generated code.
public struct NestCMessageReader {
  @usableFromInline let base: UnsafeMutableRawPointer
  /// Nil for a message without fields (protobuf-c gives it no table).
  @usableFromInline let fields: UnsafePointer<ProtobufCFieldDescriptor>?

  @usableFromInline
  init(message: UnsafeMutablePointer<ProtobufCMessage>) {
    self.base = UnsafeMutableRawPointer(message)
    self.fields = message.pointee.descriptor.pointee.fields
  }

  @inlinable func value(_ field: Int) -> UnsafeMutableRawPointer {
    self.base + Int(self.fields.unsafelyUnwrapped[field].offset)
  }
  @inlinable func count(_ field: Int) -> Int {
    self.base.loadUnaligned(fromByteOffset: Int(self.fields.unsafelyUnwrapped[field].quantifier_offset), as: Int.self)
  }
  @inlinable func array(_ field: Int) -> UnsafeMutableRawPointer? {
    self.value(field).load(as: UnsafeMutableRawPointer?.self)
  }

  @inlinable public func scalar<T: NestCScalar>(_ field: Int) -> T {
    T._load(from: self.value(field))
  }

  @inlinable public func string(_ field: Int) -> String {
    guard let chars = self.value(field).load(as: UnsafePointer<CChar>?.self) else { return "" }
    return String(cString: chars)
  }

  @inlinable public func bytes(_ field: Int) -> [UInt8] {
    Self.bytes(at: self.value(field))
  }

  @inlinable static func bytes(at pointer: UnsafeRawPointer) -> [UInt8] {
    let binary = pointer.load(as: ProtobufCBinaryData.self)
    guard binary.len > 0, let data = binary.data else { return [] }
    return Array(UnsafeBufferPointer(start: data, count: binary.len))
  }

  @inlinable public func message<M: NestMessage>(_ field: Int) -> M? {
    guard let pointer = self.value(field).load(as: UnsafeMutablePointer<ProtobufCMessage>?.self)
    else { return nil }
    return M(_protobufC: NestCMessageReader(message: pointer))
  }

  @inlinable public func repeatedScalar<T: NestCScalar>(_ field: Int) -> [T] {
    let count = self.count(field)
    guard count > 0, let array = self.array(field) else { return [] }
    return (0..<count).map { T._load(from: array + $0 * T._stride) }
  }

  @inlinable public func repeatedString(_ field: Int) -> [String] {
    let count = self.count(field)
    guard count > 0, let array = self.array(field) else { return [] }
    let strings = array.assumingMemoryBound(to: UnsafePointer<CChar>?.self)
    return (0..<count).map { strings[$0].map { String(cString: $0) } ?? "" }
  }

  @inlinable public func repeatedBytes(_ field: Int) -> [[UInt8]] {
    let count = self.count(field)
    guard count > 0, let array = self.array(field) else { return [] }
    let stride = MemoryLayout<ProtobufCBinaryData>.stride
    return (0..<count).map { Self.bytes(at: array + $0 * stride) }
  }

  @inlinable public func repeatedMessage<M: NestMessage>(_ field: Int) -> [M] {
    self.forEachMessage(field) { M(_protobufC: $0) }
  }

  /// A map field: protobuf-c's repeated entry messages (key = field 0, value = field 1).
  @inlinable public func map<K: Hashable, V>(
    _ field: Int,
    _ entry: (NestCMessageReader) -> (K, V)
  ) -> [K: V] {
    // Later entries with the same key win, as the protobuf spec says.
    Dictionary(self.forEachMessage(field, entry), uniquingKeysWith: { _, last in last })
  }

  @inlinable func forEachMessage<R>(_ field: Int, _ body: (NestCMessageReader) -> R) -> [R] {
    let count = self.count(field)
    guard count > 0, let array = self.array(field) else { return [] }
    let messages = array.assumingMemoryBound(to: UnsafeMutablePointer<ProtobufCMessage>?.self)
    return (0..<count).compactMap { messages[$0].map { body(NestCMessageReader(message: $0)) } }
  }

  /// The field number of the oneof member that is set (0: none), via any member's index.
  @inlinable public func oneofCase(_ field: Int) -> UInt32 {
    self.base.loadUnaligned(
      fromByteOffset: Int(self.fields.unsafelyUnwrapped[field].quantifier_offset), as: UInt32.self)
  }

  public var unknownFields: NestUnknownFields {
    let message = self.base.assumingMemoryBound(to: ProtobufCMessage.self).pointee
    guard message.n_unknown_fields > 0, let unknown = message.unknown_fields else { return .init() }
    return NestUnknownFields(
      fields: (0..<Int(message.n_unknown_fields)).map { index in
        let field = unknown[index]
        return .init(
          tag: field.tag,
          wireType: UInt8(field.wire_type.rawValue),
          data: field.len > 0 ? Array(UnsafeBufferPointer(start: field.data, count: field.len)) : []
        )
      }
    )
  }
}

/// Fills one protobuf-c message before it is packed; memory comes from the encoding arena.
/// For generated code. Fields left alone keep protobuf-c's defaults.
public struct NestCMessageWriter {
  @usableFromInline let base: UnsafeMutableRawPointer
  /// Nil for a message without fields (protobuf-c gives it no table).
  @usableFromInline let fields: UnsafePointer<ProtobufCFieldDescriptor>?
  @usableFromInline let arena: Arena

  @usableFromInline
  init(message: UnsafeMutablePointer<ProtobufCMessage>, arena: Arena) {
    self.base = UnsafeMutableRawPointer(message)
    self.fields = message.pointee.descriptor.pointee.fields
    self.arena = arena
  }

  @inlinable func value(_ field: Int) -> UnsafeMutableRawPointer {
    self.base + Int(self.fields.unsafelyUnwrapped[field].offset)
  }
  @inlinable func setArray(_ field: Int, count: Int, _ array: UnsafeMutableRawPointer) {
    self.base.storeBytes(
      of: count, toByteOffset: Int(self.fields.unsafelyUnwrapped[field].quantifier_offset), as: Int.self)
    self.value(field).storeBytes(of: array, as: UnsafeMutableRawPointer.self)
  }

  @inlinable public func setScalar<T: NestCScalar>(_ field: Int, _ value: T) {
    value._store(to: self.value(field))
  }

  @inlinable public func setString(_ field: Int, _ value: String) throws(NestProtoError) {
    if value.isEmpty { return }  // protobuf-c's default is already the empty string
    let chars = try self.cString(value, field: field)
    self.value(field).storeBytes(of: chars, as: UnsafeMutableRawPointer.self)
  }

  @inlinable public func setBytes(_ field: Int, _ value: [UInt8]) {
    Self.storeBytes(value, at: self.value(field), arena: self.arena)
  }

  @inlinable public func setMessage<M: NestMessage>(_ field: Int, _ value: M?)
    throws(NestProtoError)
  {
    guard let value else { return }
    let message = try self.newMessage(field, value)
    self.value(field).storeBytes(of: message, as: UnsafeMutableRawPointer.self)
  }

  @inlinable public func setRepeatedScalar<T: NestCScalar>(_ field: Int, _ values: [T]) {
    guard !values.isEmpty else { return }
    let array = self.arena.allocate(values.count * T._stride)!
    for (index, value) in values.enumerated() { value._store(to: array + index * T._stride) }
    self.setArray(field, count: values.count, array)
  }

  @inlinable public func setRepeatedString(_ field: Int, _ values: [String])
    throws(NestProtoError)
  {
    guard !values.isEmpty else { return }
    let array = self.arena.allocate(values.count * MemoryLayout<UnsafeRawPointer>.stride)!
    for (index, value) in values.enumerated() {
      let chars = try self.cString(value, field: field)
      (array + index * MemoryLayout<UnsafeRawPointer>.stride)
        .storeBytes(of: chars, as: UnsafeMutableRawPointer.self)
    }
    self.setArray(field, count: values.count, array)
  }

  @inlinable public func setRepeatedBytes(_ field: Int, _ values: [[UInt8]]) {
    guard !values.isEmpty else { return }
    let stride = MemoryLayout<ProtobufCBinaryData>.stride
    let array = self.arena.allocate(values.count * stride)!
    for (index, value) in values.enumerated() {
      Self.storeBytes(value, at: array + index * stride, arena: self.arena)
    }
    self.setArray(field, count: values.count, array)
  }

  @inlinable public func setRepeatedMessage<M: NestMessage>(_ field: Int, _ values: [M])
    throws(NestProtoError)
  {
    try self.setMessages(field, values) { writer, value throws(NestProtoError) in
      try value._write(to: writer)
    }
  }

  /// A map field as protobuf-c's repeated entry messages, sorted by key so that the
  /// encoding is canonical.
  @inlinable public func setMap<K: Hashable, V>(
    _ field: Int,
    _ values: [K: V],
    by areInIncreasingOrder: (K, K) -> Bool,
    _ entry: (NestCMessageWriter, K, V) throws(NestProtoError) -> Void
  ) throws(NestProtoError) {
    try self.setMessages(field, values.sorted { areInIncreasingOrder($0.key, $1.key) }) {
      writer, pair throws(NestProtoError) in
      try entry(writer, pair.key, pair.value)
    }
  }

  /// Marks the oneof member at `field` as the one that is set. protobuf-c packs a oneof
  /// string whose pointer is the field's default, or bytes without data, as if unset: an
  /// empty member gets storage of its own, so that a member set to "" is still sent.
  @inlinable public func setOneofCase(_ field: Int) {
    let descriptor = self.fields.unsafelyUnwrapped[field]
    switch descriptor.type {
    case PROTOBUF_C_TYPE_STRING:
      let pointer = self.value(field).load(as: UnsafeRawPointer?.self)
      if pointer == nil || pointer == UnsafeRawPointer(descriptor.default_value) {
        let empty = self.arena.allocate(1)!
        empty.storeBytes(of: 0, as: UInt8.self)
        self.value(field).storeBytes(of: empty, as: UnsafeMutableRawPointer.self)
      }
    case PROTOBUF_C_TYPE_BYTES:
      let data = self.value(field).load(fromByteOffset: MemoryLayout<Int>.stride, as: UnsafeRawPointer?.self)
      if data == nil {
        self.value(field).storeBytes(
          of: self.arena.allocate(1)!, toByteOffset: MemoryLayout<Int>.stride, as: UnsafeMutableRawPointer.self)
      }
    default:
      break
    }
    self.base.storeBytes(of: descriptor.id, toByteOffset: Int(descriptor.quantifier_offset), as: UInt32.self)
  }

  public func setUnknownFields(_ unknown: NestUnknownFields) {
    guard !unknown.fields.isEmpty else { return }
    let stride = MemoryLayout<ProtobufCMessageUnknownField>.stride
    let array = self.arena.allocate(unknown.fields.count * stride)!
      .bindMemory(to: ProtobufCMessageUnknownField.self, capacity: unknown.fields.count)
    for (index, field) in unknown.fields.enumerated() {
      let data = field.data.withUnsafeBytes { self.arena.copy($0, terminate: false) }
      array[index] = ProtobufCMessageUnknownField(
        tag: field.tag,
        wire_type: ProtobufCWireType(rawValue: UInt32(field.wireType)),
        len: field.data.count,
        data: data.assumingMemoryBound(to: UInt8.self)
      )
    }
    let message = self.base.assumingMemoryBound(to: ProtobufCMessage.self)
    message.pointee.n_unknown_fields = UInt32(unknown.fields.count)
    message.pointee.unknown_fields = array
  }

  @inlinable func setMessages<S: Collection>(
    _ field: Int,
    _ values: S,
    _ write: (NestCMessageWriter, S.Element) throws(NestProtoError) -> Void
  ) throws(NestProtoError) {
    guard !values.isEmpty else { return }
    let stride = MemoryLayout<UnsafeRawPointer>.stride
    let array = self.arena.allocate(values.count * stride)!
    let descriptor = self.fields.unsafelyUnwrapped[field].descriptor.assumingMemoryBound(
      to: ProtobufCMessageDescriptor.self)
    var index = 0
    for value in values {
      let message = self.arena.newMessage(descriptor)
      try write(NestCMessageWriter(message: message, arena: self.arena), value)
      (array + index * stride).storeBytes(of: message, as: UnsafeMutablePointer<ProtobufCMessage>.self)
      index += 1
    }
    self.setArray(field, count: values.count, array)
  }

  @inlinable func newMessage<M: NestMessage>(_ field: Int, _ value: M) throws(NestProtoError)
    -> UnsafeMutablePointer<ProtobufCMessage>
  {
    let descriptor = self.fields.unsafelyUnwrapped[field].descriptor.assumingMemoryBound(
      to: ProtobufCMessageDescriptor.self)
    let message = self.arena.newMessage(descriptor)
    try value._write(to: NestCMessageWriter(message: message, arena: self.arena))
    return message
  }

  /// protobuf-c packs strings with strlen: a NUL inside would silently cut the string, so
  /// it is refused instead.
  @inlinable func cString(_ value: String, field: Int) throws(NestProtoError)
    -> UnsafeMutableRawPointer
  {
    var value = value
    let chars = value.withUTF8 { utf8 in
      utf8.contains(0) ? nil : self.arena.copy(UnsafeRawBufferPointer(utf8), terminate: true)
    }
    guard let chars else {
      let name = String(cString: self.fields.unsafelyUnwrapped[field].name)
      throw NestProtoError(.invalidArgument, "\(name): strings cannot contain U+0000")
    }
    return chars
  }

  @inlinable static func storeBytes(
    _ value: [UInt8], at pointer: UnsafeMutableRawPointer, arena: Arena
  ) {
    // Always written: an element of a repeated field sits in arena memory nobody cleared,
    // so an empty one must say len 0 itself.
    let data = value.isEmpty ? nil : value.withUnsafeBytes { arena.copy($0, terminate: false) }
    pointer.storeBytes(
      of: ProtobufCBinaryData(len: value.count, data: data?.assumingMemoryBound(to: UInt8.self)),
      as: ProtobufCBinaryData.self)
  }
}
