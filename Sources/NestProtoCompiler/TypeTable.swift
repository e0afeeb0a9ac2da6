// Every message and enum of a request by full proto name, with its Swift name, and which
// message fields must be boxed because the message can contain itself.

struct TypeTable {
  private(set) var messages: [String: ProtoMessage] = [:]
  private(set) var enums: [String: ProtoEnum] = [:]
  private(set) var swiftNames: [String: String] = [:]
  /// Messages each message holds inline (singular message fields and oneof members).
  private var inlineEdges: [String: Set<String>] = [:]

  init(files: [ProtoFile]) {
    for file in files {
      let prefix = SwiftNaming.typePrefix(package: file.package)
      for message in file.messages { self.add(message, swiftName: prefix + message.name) }
      for enumeration in file.enums {
        self.enums[enumeration.fullName] = enumeration
        self.swiftNames[enumeration.fullName] = prefix + enumeration.name
      }
    }
  }

  private mutating func add(_ message: ProtoMessage, swiftName: String) {
    self.messages[message.fullName] = message
    self.swiftNames[message.fullName] = swiftName
    self.inlineEdges[message.fullName] = Set(
      message.fields.filter { $0.kind == .message && $0.label != .repeated }.map(\.typeName))
    for nested in message.messages {
      self.add(nested, swiftName: swiftName + "." + SwiftNaming.escaped(nested.name))
    }
    for enumeration in message.enums {
      self.enums[enumeration.fullName] = enumeration
      self.swiftNames[enumeration.fullName] = swiftName + "." + SwiftNaming.escaped(enumeration.name)
    }
  }

  func swiftName(_ fullName: String) -> String {
    self.swiftNames[fullName] ?? "UNKNOWN_TYPE_\(fullName)"
  }

  func mapEntry(_ field: ProtoField) -> ProtoMessage? {
    guard field.kind == .message, field.label == .repeated,
      let entry = self.messages[field.typeName], entry.isMapEntry
    else { return nil }
    return entry
  }

  /// Whether `field` of `owner` refers to a message that can hold `owner` inline again, so
  /// that a struct would contain itself.
  func isRecursive(_ field: ProtoField, in owner: ProtoMessage) -> Bool {
    guard field.kind == .message, field.label != .repeated else { return false }
    var seen: Set<String> = []
    var pending = [field.typeName]
    while let next = pending.popLast() {
      if next == owner.fullName { return true }
      if seen.insert(next).inserted {
        pending.append(contentsOf: self.inlineEdges[next] ?? [])
      }
    }
    return false
  }
}
