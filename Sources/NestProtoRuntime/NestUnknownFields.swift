/// Fields a message carried that this code's schema does not know: kept verbatim and
/// written back after the known fields, so a service passes on what a newer peer sent.
public struct NestUnknownFields: Hashable, Sendable {
  public struct Field: Hashable, Sendable {
    /// The field number.
    public var tag: UInt32
    /// The protobuf wire type (0 varint, 1 64-bit, 2 length-delimited, 5 32-bit).
    public var wireType: UInt8
    /// The field's value as it was on the wire, without tag (and without length prefix
    /// for length-delimited fields).
    public var data: [UInt8]

    public init(tag: UInt32, wireType: UInt8, data: [UInt8]) {
      self.tag = tag
      self.wireType = wireType
      self.data = data
    }
  }

  public var fields: [Field]

  public init(fields: [Field] = []) {
    self.fields = fields
  }

  public var isEmpty: Bool { self.fields.isEmpty }
}

/// Holds a message field of a recursive message (a message that can contain itself), which
/// a Swift struct cannot store inline. Compared and hashed by value.
public final class NestBox<Value: Hashable & Sendable>: Hashable, Sendable {
  public let value: Value

  public init(_ value: Value) {
    self.value = value
  }

  public static func == (lhs: NestBox, rhs: NestBox) -> Bool {
    lhs === rhs || lhs.value == rhs.value
  }

  public func hash(into hasher: inout Hasher) {
    self.value.hash(into: &hasher)
  }
}
