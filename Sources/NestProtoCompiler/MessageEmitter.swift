// Renders the Swift value type of each message and enum, and its conversion to and from
// protobuf-c through NestCMessageReader / NestCMessageWriter (by field index, in the field
// number order protoc-c uses).

struct MessageEmitter {
  let types: TypeTable
  /// Messages that clear fields for some readers (TypeTable.redactedMessages).
  var redacted: Set<String> = []

  func render(_ enumeration: ProtoEnum, indent: String) -> String {
    let name = self.types.swiftName(enumeration.fullName).split(separator: ".").last.map(String.init)!
    var seen: Set<Int32> = []
    let values = enumeration.values.filter { seen.insert($0.number).inserted }
    let cases = values.map { (SwiftNaming.escaped(SwiftNaming.enumCase($0.name, enumName: enumeration.name)), $0) }
    var out = SwiftNaming.docComment(enumeration.comments, indent: indent)
    out += "\(indent)public enum \(name): NestEnum, CaseIterable {\n"
    for (swiftCase, value) in cases {
      out += SwiftNaming.docComment(value.comments, indent: indent + "  ")
      out += "\(indent)  case \(swiftCase)  // \(value.name) = \(value.number)\n"
    }
    out += "\(indent)  /// A value this schema does not know, kept as it was sent.\n"
    out += "\(indent)  case unrecognized(Int32)\n\n"
    out += "\(indent)  public static let allCases: [Self] = [\(cases.map { "." + $0.0 }.joined(separator: ", "))]\n\n"
    out += "\(indent)  public init() { self.init(rawValue: 0) }\n\n"
    out += "\(indent)  public init(rawValue: Int32) {\n\(indent)    switch rawValue {\n"
    for (swiftCase, value) in cases {
      out += "\(indent)    case \(value.number): self = .\(swiftCase)\n"
    }
    out += "\(indent)    default: self = .unrecognized(rawValue)\n\(indent)    }\n\(indent)  }\n\n"
    out += "\(indent)  public var rawValue: Int32 {\n\(indent)    switch self {\n"
    for (swiftCase, value) in cases {
      out += "\(indent)    case .\(swiftCase): \(value.number)\n"
    }
    out += "\(indent)    case .unrecognized(let value): value\n\(indent)    }\n\(indent)  }\n"
    out += "\(indent)}\n"
    return out
  }

  func render(_ message: ProtoMessage, indent: String) throws -> String {
    let swiftName = self.types.swiftName(message.fullName)
    let name = String(swiftName.split(separator: ".").last!)
    let fields = message.fields.sorted { $0.number < $1.number }
    let inner = indent + "  "
    var out = SwiftNaming.docComment(message.comments, indent: indent)
    out += "\(indent)public struct \(name): NestMessage {\n"
    out += "\(inner)public static let protoMessageName = \"\(message.fullName)\"\n"
    out += "\(inner)public static let _protobufC = NestCMessageType(named: protoMessageName, in: _nestCDescriptors)\n\n"

    // Stored properties, oneofs once at their first member.
    var renderedOneofs: Set<Int> = []
    for field in fields {
      if let oneof = field.oneofIndex {
        guard renderedOneofs.insert(oneof).inserted else { continue }
        let oneofName = message.oneofs[oneof]
        out +=
          "\(inner)public var \(SwiftNaming.escaped(SwiftNaming.lowerCamel(oneofName))): \(self.oneofType(oneofName))? = nil\n"
        continue
      }
      out += SwiftNaming.docComment(field.comments, indent: inner)
      let property = SwiftNaming.escaped(SwiftNaming.lowerCamel(field.name))
      if self.types.isRecursive(field, in: message) {
        let type = self.types.swiftName(field.typeName)
        out += "\(inner)public var \(property): \(type)? {\n"
        out += "\(inner)  get { self._\(SwiftNaming.lowerCamel(field.name))?.value }\n"
        out += "\(inner)  set { self._\(SwiftNaming.lowerCamel(field.name)) = newValue.map(NestBox.init) }\n"
        out += "\(inner)}\n"
        out += "\(inner)private var _\(SwiftNaming.lowerCamel(field.name)): NestBox<\(type)>? = nil\n"
      } else {
        out += "\(inner)public var \(property): \(self.swiftType(field)) = \(self.defaultValue(field))\n"
      }
    }
    out += "\(inner)public var unknownFields = NestUnknownFields()\n\n"
    out += "\(inner)public init() {}\n"

    // Oneof enums.
    for (index, oneofName) in message.oneofs.enumerated() {
      let members = fields.filter { $0.oneofIndex == index }
      guard !members.isEmpty else { continue }
      let recursive = members.contains { self.types.isRecursive($0, in: message) }
      out += "\n\(inner)\(recursive ? "indirect " : "")public enum \(self.oneofType(oneofName)): Hashable, Sendable {\n"
      for member in members {
        out += SwiftNaming.docComment(member.comments, indent: inner + "  ")
        out +=
          "\(inner)  case \(SwiftNaming.escaped(SwiftNaming.lowerCamel(member.name)))(\(self.elementType(member)))\n"
      }
      out += "\(inner)}\n"
    }

    for nested in message.enums {
      out += "\n" + self.render(nested, indent: inner)
    }
    for nested in message.messages where !nested.isMapEntry {
      out += "\n" + (try self.render(nested, indent: inner))
    }

    // protobuf-c conversion.
    out += "\n\(inner)public init(_protobufC r: NestCMessageReader) {\n"
    for (oneof, members) in self.oneofGroups(fields) {
      let property = SwiftNaming.lowerCamel(message.oneofs[oneof])
      let first = fields.firstIndex(of: members[0])!
      out += "\(inner)  switch r.oneofCase(\(first)) {\n"
      for member in members {
        let index = fields.firstIndex(of: member)!
        let value = member.kind == .message ? "r.message(\(index)) ?? .init()" : self.read(member, index, "r")
        out += "\(inner)  case \(member.number): self.\(property) = .\(SwiftNaming.lowerCamel(member.name))(\(value))\n"
      }
      out += "\(inner)  default: self.\(property) = nil\n\(inner)  }\n"
    }
    for (index, field) in fields.enumerated() where field.oneofIndex == nil {
      out += "\(inner)  self.\(SwiftNaming.lowerCamel(field.name)) = \(self.read(field, index, "r"))\n"
    }
    out += "\(inner)  self.unknownFields = r.unknownFields\n\(inner)}\n\n"

    out += "\(inner)public func _write(to w: NestCMessageWriter) throws(NestProtoError) {\n"
    for (index, field) in fields.enumerated() where field.oneofIndex == nil {
      out += "\(inner)  \(self.write(field, index, "w", "self.\(SwiftNaming.lowerCamel(field.name))"))\n"
    }
    for (oneof, members) in self.oneofGroups(fields) {
      out += "\(inner)  switch self.\(SwiftNaming.lowerCamel(message.oneofs[oneof])) {\n"
      for member in members {
        let index = fields.firstIndex(of: member)!
        out += "\(inner)  case .\(SwiftNaming.lowerCamel(member.name))(let value)?:\n"
        out += "\(inner)    \(self.write(member, index, "w", "value", singular: true))\n"
        out += "\(inner)    w.setOneofCase(\(index))\n"
      }
      out += "\(inner)  case nil: break\n\(inner)  }\n"
    }
    out += "\(inner)  w.setUnknownFields(self.unknownFields)\n\(inner)}\n"
    if self.redacted.contains(message.fullName) {
      out += "\n" + (try self.renderRedaction(message, fields: fields, indent: inner))
    }
    out += "\(indent)}\n"
    return out
  }

  /// `redacted(forRole:)`: the fields `role` may not read cleared, here and in every message
  /// held, as declared by `(nest.access.v1.field)`.
  private func renderRedaction(_ message: ProtoMessage, fields: [ProtoField], indent: String) throws -> String {
    var out = "\(indent)public func redacted(forRole role: Int32) -> Self {\n"
    out += "\(indent)  var copy = self\n"
    for field in fields {
      let property = "copy." + SwiftNaming.escaped(SwiftNaming.lowerCamel(field.name))
      if let access = try field.access() {
        let names = access.readers.map { String(self.types.enumCase("nest.common.v1.Role", $0).filter { $0 != "`" }) }
        out += "\(indent)  // \(field.name): read by \(names.joined(separator: ", "))\n"
        out += "\(indent)  if ![\(access.readers.map(String.init).joined(separator: ", "))].contains(role) {\n"
        if let oneof = field.oneofIndex {
          let oneofProperty = "copy." + SwiftNaming.escaped(SwiftNaming.lowerCamel(message.oneofs[oneof]))
          out +=
            "\(indent)    if case .\(SwiftNaming.escaped(SwiftNaming.lowerCamel(field.name)))? = \(oneofProperty) { \(oneofProperty) = nil }\n"
        } else {
          out += "\(indent)    \(property) = \(self.defaultValue(field))\n"
        }
        out += "\(indent)  }\n"
      }
      guard field.kind == .message else { continue }
      if let entry = self.types.mapEntry(field) {
        let (_, value) = self.entryFields(entry)
        if value.kind == .message && self.redacted.contains(value.typeName) {
          out += "\(indent)  \(property) = \(property).mapValues { $0.redacted(forRole: role) }\n"
        }
        continue
      }
      guard self.redacted.contains(field.typeName) else { continue }
      if let oneof = field.oneofIndex {
        let oneofProperty = "copy." + SwiftNaming.escaped(SwiftNaming.lowerCamel(message.oneofs[oneof]))
        let arm = SwiftNaming.escaped(SwiftNaming.lowerCamel(field.name))
        out +=
          "\(indent)  if case .\(arm)(let value)? = \(oneofProperty) { \(oneofProperty) = .\(arm)(value.redacted(forRole: role)) }\n"
      } else if field.label == .repeated {
        out += "\(indent)  \(property) = \(property).map { $0.redacted(forRole: role) }\n"
      } else {
        out += "\(indent)  \(property) = \(property)?.redacted(forRole: role)\n"
      }
    }
    out += "\(indent)  return copy\n\(indent)}\n"
    return out
  }

  private func oneofType(_ name: String) -> String {
    "OneOf_" + SwiftNaming.upperCamel(name)
  }

  private func oneofGroups(_ fields: [ProtoField]) -> [(Int, [ProtoField])] {
    var groups: [Int: [ProtoField]] = [:]
    for field in fields { if let oneof = field.oneofIndex { groups[oneof, default: []].append(field) } }
    return groups.sorted { $0.key < $1.key }
  }

  /// The type of one element (the field itself when singular).
  private func elementType(_ field: ProtoField) -> String {
    switch field.kind {
    case .double: "Double"
    case .float: "Float"
    case .int64, .sint64, .sfixed64: "Int64"
    case .uint64, .fixed64: "UInt64"
    case .int32, .sint32, .sfixed32: "Int32"
    case .uint32, .fixed32: "UInt32"
    case .bool: "Bool"
    case .string: "String"
    case .bytes: "[UInt8]"
    case .enum, .message, .group: self.types.swiftName(field.typeName)
    }
  }

  private func swiftType(_ field: ProtoField) -> String {
    if let entry = self.types.mapEntry(field) {
      let (key, value) = self.entryFields(entry)
      return "[\(self.elementType(key)): \(self.elementType(value))]"
    }
    if field.label == .repeated { return "[\(self.elementType(field))]" }
    if field.kind == .message { return "\(self.elementType(field))?" }
    return self.elementType(field)
  }

  private func defaultValue(_ field: ProtoField) -> String {
    if self.types.mapEntry(field) != nil { return "[:]" }
    if field.label == .repeated { return "[]" }
    switch field.kind {
    case .message, .group: return "nil"
    case .string: return "\"\""
    case .bytes: return "[]"
    case .bool: return "false"
    case .enum: return ".init(rawValue: 0)"
    default: return "0"
    }
  }

  private func entryFields(_ entry: ProtoMessage) -> (ProtoField, ProtoField) {
    let sorted = entry.fields.sorted { $0.number < $1.number }
    return (sorted[0], sorted[1])
  }

  private func read(_ field: ProtoField, _ index: Int, _ reader: String) -> String {
    if let entry = self.types.mapEntry(field) {
      let (key, value) = self.entryFields(entry)
      let valueRead =
        value.kind == .message
        ? "e.message(1) ?? \(self.elementType(value))()"
        : "\(self.read(value, 1, "e")) as \(self.elementType(value))"
      return "\(reader).map(\(index)) { e in (\(self.read(key, 0, "e")) as \(self.elementType(key)), \(valueRead)) }"
    }
    let repeated = field.label == .repeated
    switch field.kind {
    case .string: return "\(reader).\(repeated ? "repeatedString" : "string")(\(index))"
    case .bytes: return "\(reader).\(repeated ? "repeatedBytes" : "bytes")(\(index))"
    case .message, .group: return "\(reader).\(repeated ? "repeatedMessage" : "message")(\(index))"
    default: return "\(reader).\(repeated ? "repeatedScalar" : "scalar")(\(index))"
    }
  }

  private func write(
    _ field: ProtoField, _ index: Int, _ writer: String, _ value: String, singular: Bool = false
  ) -> String {
    if !singular, let entry = self.types.mapEntry(field) {
      let (key, entryValue) = self.entryFields(entry)
      let order = key.kind == .bool ? "{ !$0 && $1 }" : "(<)"
      return "try \(writer).setMap(\(index), \(value), by: \(order)) { e, key, value throws(NestProtoError) in "
        + "\(self.write(key, 0, "e", "key", singular: true)); \(self.write(entryValue, 1, "e", "value", singular: true)) }"
    }
    let repeated = field.label == .repeated && !singular
    switch field.kind {
    case .string: return "try \(writer).\(repeated ? "setRepeatedString" : "setString")(\(index), \(value))"
    case .bytes: return "\(writer).\(repeated ? "setRepeatedBytes" : "setBytes")(\(index), \(value))"
    case .message, .group:
      return "try \(writer).\(repeated ? "setRepeatedMessage" : "setMessage")(\(index), \(value))"
    default: return "\(writer).\(repeated ? "setRepeatedScalar" : "setScalar")(\(index), \(value))"
    }
  }
}
