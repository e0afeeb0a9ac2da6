// protoc's descriptors as plain Swift values: what the generator renders from and what the
// breaking-change guard compares. Only the parts this project uses.

public struct ProtoFile: Hashable, Sendable {
  public var name: String
  public var package: String
  public var dependencies: [String]
  public var messages: [ProtoMessage]
  public var enums: [ProtoEnum]
  public var services: [ProtoService]
}

public struct ProtoMessage: Hashable, Sendable {
  public var name: String
  /// Without the leading dot: `nest.catalog.v1.Service`.
  public var fullName: String
  public var fields: [ProtoField]
  public var oneofs: [String]
  public var messages: [ProtoMessage]
  public var enums: [ProtoEnum]
  public var isMapEntry: Bool
  public var reservedNumbers: [ClosedRange<Int32>]
  public var reservedNames: [String]
  public var comments: String
}

public struct ProtoField: Hashable, Sendable {
  public enum Label: Int, Hashable, Sendable {
    case optional = 1, required = 2, repeated = 3
  }

  /// descriptor.proto's FieldDescriptorProto.Type numbers.
  public enum Kind: Int, Hashable, Sendable {
    case double = 1, float, int64, uint64, int32, fixed64, fixed32, bool, string, group,
      message, bytes, uint32, `enum`, sfixed32, sfixed64, sint32, sint64
  }

  public var name: String
  public var number: Int32
  public var label: Label
  public var kind: Kind
  /// For messages and enums, without the leading dot.
  public var typeName: String
  /// Index into the containing message's `oneofs`.
  public var oneofIndex: Int?
  public var isProto3Optional: Bool
  public var comments: String
  /// The encoded `(nest.access.v1.field)` option, if set: who may read the field.
  public var accessOption: [UInt8]? = nil
}

public struct ProtoEnum: Hashable, Sendable {
  public struct Value: Hashable, Sendable {
    public var name: String
    public var number: Int32
    public var comments: String
  }

  public var name: String
  public var fullName: String
  public var values: [Value]
  public var reservedNumbers: [ClosedRange<Int32>]
  public var reservedNames: [String]
  public var comments: String
}

public struct ProtoService: Hashable, Sendable {
  public struct Method: Hashable, Sendable {
    public var name: String
    public var inputType: String
    public var outputType: String
    public var clientStreaming: Bool
    public var serverStreaming: Bool
    public var comments: String
    /// The encoded `(nest.access.v1.method)` option, if set: who may call the method.
    public var accessOption: [UInt8]? = nil
  }

  public var name: String
  public var fullName: String
  public var methods: [Method]
  public var comments: String
}

extension ProtoFile {
  /// Every message in the file, nested ones included, parents first.
  public var allMessages: [ProtoMessage] {
    func flatten(_ messages: [ProtoMessage]) -> [ProtoMessage] {
      messages.flatMap { [$0] + flatten($0.messages) }
    }
    return flatten(self.messages)
  }

  /// Every enum in the file, nested ones included.
  public var allEnums: [ProtoEnum] {
    self.enums + self.allMessages.flatMap(\.enums)
  }
}

extension ProtoField {
  /// Who may read the field; nil when anyone may.
  public func access() throws -> FieldAccessDeclaration? {
    try self.accessOption.map(AccessOptions.field)
  }
}

extension ProtoService.Method {
  /// Who may call the method; nil when it declares nothing.
  public func access() throws -> MethodAccessDeclaration? {
    try self.accessOption.map(AccessOptions.method)
  }
}
