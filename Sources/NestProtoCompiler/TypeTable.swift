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

  /// The messages whose responses must be redacted for some reader: those with a field only
  /// some roles may read, and those that hold such a message (in any field, however deep).
  func redactedMessages() throws -> Set<String> {
    var result: Set<String> = []
    for message in self.messages.values where try message.fields.contains(where: { try $0.access() != nil }) {
      result.insert(message.fullName)
    }
    var changed = true
    while changed {
      changed = false
      for message in self.messages.values where !result.contains(message.fullName) {
        let holds = message.fields.contains { field in
          guard field.kind == .message else { return false }
          if let entry = self.mapEntry(field) {
            return entry.fields.contains { $0.kind == .message && result.contains($0.typeName) }
          }
          return result.contains(field.typeName)
        }
        if holds {
          result.insert(message.fullName)
          changed = true
        }
      }
    }
    return result
  }

  /// The Swift case of an enum's value `number`, e.g. `.customer` for Role 3.
  func enumCase(_ enumFullName: String, _ number: Int32) -> String {
    guard let enumeration = self.enums[enumFullName],
      let value = enumeration.values.first(where: { $0.number == number })
    else { return "init(rawValue: \(number))" }
    return SwiftNaming.escaped(SwiftNaming.enumCase(value.name, enumName: enumeration.name))
  }
}
