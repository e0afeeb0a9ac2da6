// The breaking-change guard: compares a schema with its committed baseline by buf's WIRE
// rules (what an already deployed peer would misread) plus one of our own: no service or
// RPC disappears, since other services call them.

public struct BreakingChange: Hashable, Sendable, CustomStringConvertible {
  /// Where: a message, field, enum, service or RPC by full name.
  public var subject: String
  public var problem: String
  public var description: String { "\(self.subject): \(self.problem)" }
}

public func breakingChanges(baseline: [ProtoFile], current: [ProtoFile]) -> [BreakingChange] {
  var changes: [BreakingChange] = []
  func report(_ subject: String, _ problem: String) {
    changes.append(BreakingChange(subject: subject, problem: problem))
  }

  let currentMessages = indexed(current.flatMap(\.allMessages), by: \.fullName)
  for old in baseline.flatMap(\.allMessages) {
    guard let new = currentMessages[old.fullName] else {
      report(old.fullName, "message removed")
      continue
    }
    let newFields = indexed(new.fields, by: \.number)
    for oldField in old.fields {
      let subject = "\(old.fullName).\(oldField.name) (\(oldField.number))"
      guard let newField = newFields[oldField.number] else {
        if !new.reservedNumbers.contains(where: { $0.contains(oldField.number) }) {
          report(subject, "field removed without reserving its number")
        }
        continue
      }
      if oldField.kind != newField.kind || oldField.typeName != newField.typeName {
        report(subject, "type changed from \(oldField.typeDescription) to \(newField.typeDescription)")
      }
      if oldField.label != newField.label {
        report(subject, "cardinality changed from \(oldField.label) to \(newField.label)")
      }
      let oldOneof = oldField.oneofIndex.map { old.oneofs[$0] }
      let newOneof = newField.oneofIndex.map { new.oneofs[$0] }
      if oldOneof != newOneof {
        report(subject, "moved from oneof \(oldOneof ?? "(none)") to \(newOneof ?? "(none)")")
      }
    }
  }

  let currentEnums = indexed(current.flatMap(\.allEnums), by: \.fullName)
  for old in baseline.flatMap(\.allEnums) {
    guard let new = currentEnums[old.fullName] else {
      report(old.fullName, "enum removed")
      continue
    }
    let numbers = Set(new.values.map(\.number))
    for value in old.values where !numbers.contains(value.number) {
      if !new.reservedNumbers.contains(where: { $0.contains(value.number) }) {
        report("\(old.fullName).\(value.name) (\(value.number))", "enum value removed without reserving its number")
      }
    }
  }

  let currentServices = indexed(current.flatMap(\.services), by: \.fullName)
  for old in baseline.flatMap(\.services) {
    guard let new = currentServices[old.fullName] else {
      report(old.fullName, "service removed")
      continue
    }
    let methods = indexed(new.methods, by: \.name)
    for oldMethod in old.methods {
      let subject = "\(old.fullName)/\(oldMethod.name)"
      guard let newMethod = methods[oldMethod.name] else {
        report(subject, "RPC removed")
        continue
      }
      if oldMethod.inputType != newMethod.inputType {
        report(subject, "request type changed from \(oldMethod.inputType) to \(newMethod.inputType)")
      }
      if oldMethod.outputType != newMethod.outputType {
        report(subject, "response type changed from \(oldMethod.outputType) to \(newMethod.outputType)")
      }
      if oldMethod.clientStreaming != newMethod.clientStreaming
        || oldMethod.serverStreaming != newMethod.serverStreaming
      {
        report(subject, "streaming changed")
      }
    }
  }
  return changes
}

/// `items` by `key`; the first of any duplicates wins (protoc refuses duplicates anyway).
private func indexed<T, Key: Hashable>(_ items: [T], by key: KeyPath<T, Key>) -> [Key: T] {
  Dictionary(items.map { ($0[keyPath: key], $0) }, uniquingKeysWith: { first, _ in first })
}

extension ProtoField {
  var typeDescription: String {
    switch self.kind {
    case .message, .enum, .group: self.typeName
    default: "\(self.kind)"
    }
  }
}
