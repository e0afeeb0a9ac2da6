// Printing messages: JSON (proto3 JSON field names, int64 as strings, enums by name, bytes
// in base64) for scripts, and for people a table of a list's rows or the fields of one
// message. Works on any generated message by reflection, so new fields print without code.
import Foundation
import NestDomain
import NestProto
import NestServiceKit

enum Output {
  /// `serviceID` -> `serviceId`: proto3 JSON's lowerCamelCase.
  static func jsonName(_ swiftName: String) -> String {
    var name = swiftName
    for acronym in ["ID", "URL", "IDs"] where name.hasSuffix(acronym) || name.contains(acronym) {
      name = name.replacingOccurrences(of: acronym, with: acronym.prefix(1) + acronym.dropFirst().lowercased())
    }
    return name
  }

  /// The fields of a message with a value other than the default, in declaration order.
  static func fields(of value: Any) -> [(String, Any)] {
    Mirror(reflecting: value).children.compactMap { child in
      guard let label = child.label, label != "unknownFields", let shown = self.present(child.value) else { return nil }
      return (self.jsonName(label), shown)
    }
  }

  /// nil for values proto3 JSON leaves out (defaults, empty, unset); the value otherwise.
  static func present(_ value: Any) -> Any? {
    let mirror = Mirror(reflecting: value)
    if mirror.displayStyle == .optional {
      return mirror.children.first.map(\.value).flatMap(self.present)
    }
    switch value {
    case let string as String: return string.isEmpty ? nil : string
    case let bool as Bool: return bool ? bool : nil
    case let number as any BinaryInteger: return self.isZero(number) ? nil : value
    case let bytes as [UInt8]: return bytes.isEmpty ? nil : bytes
    case let array as [Any]: return array.isEmpty ? nil : array
    case let map as [String: String]: return map.isEmpty ? nil : map
    default: break
    }
    if let rawValue = (value as? any NestEnum)?.rawValue { return rawValue == 0 ? nil : value }
    if mirror.displayStyle == .enum, let payload = mirror.children.first {
      // A oneof: its one field.
      return [(payload.label.map(self.jsonName) ?? "value", payload.value)] as [(String, Any)]
    }
    return value
  }

  static func isZero<Number: BinaryInteger>(_ number: Number) -> Bool { number == 0 }

  static func json(_ value: Any) -> Any {
    switch value {
    case let string as String: return string
    case let bool as Bool: return bool
    case let number as Int64: return String(number)
    case let number as UInt64: return String(number)
    case let number as any BinaryInteger: return Int(truncatingIfNeeded: number)
    case let bytes as [UInt8]: return Data(bytes).base64EncodedString()
    case let map as [String: String]: return map
    case let pairs as [(String, Any)]:
      return Dictionary(pairs.map { ($0.0, self.json($0.1)) }, uniquingKeysWith: { a, _ in a })
    case let array as [Any]: return array.map(self.json)
    default: break
    }
    if value is any NestEnum {
      // Proto3 JSON spells enum values in full: SERVICE_TYPE_PRIVATE.
      let typeName = String(describing: type(of: value)).split(separator: "_").last.map(String.init) ?? ""
      return "\(statusName(typeName.prefix(1).lowercased() + typeName.dropFirst()))_\(statusName(value))"
    }
    if let box = Mirror(reflecting: value).children.first, Mirror(reflecting: value).displayStyle == .class {
      return self.json(box.value)  // a boxed recursive field
    }
    return Dictionary(self.fields(of: value).map { ($0.0, self.json($0.1)) }, uniquingKeysWith: { a, _ in a })
  }

  static func jsonText(_ message: any NestMessage) -> String {
    let object = self.json(message)
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    else { return "{}" }
    return String(decoding: data, as: UTF8.self)
  }

  /// A short rendering of a value for a table cell.
  static func cell(_ value: Any) -> String {
    switch value {
    case let string as String: return string
    case let array as [Any]: return "\(array.count) items"
    case let map as [String: String]: return map.sorted { $0.key < $1.key }.map { "\($0)=\($1)" }.joined(separator: ",")
    case let bytes as [UInt8]: return "\(bytes.count) bytes"
    default: break
    }
    if value is any NestEnum { return statusName(value) }
    let fields = self.fields(of: value)
    if let money = value as? Nest_Common_V1_Money { return MoneyFormat.string(money) }
    if Mirror(reflecting: value).displayStyle == .struct {
      return fields.prefix(2).map { "\($0.0)=\(self.cell($0.1))" }.joined(separator: " ")
    }
    return "\(value)"
  }

  /// For people: the rows of the response's first list as a table, or its fields as lines.
  static func human(_ message: any NestMessage) -> String {
    let fields = self.fields(of: message)
    if let (_, list) = fields.first(where: { $0.1 is [Any] && !($0.1 is [UInt8]) }), let rows = list as? [Any],
      let first = rows.first, Mirror(reflecting: first).displayStyle == .struct
    {
      let columns = Array(
        self.fields(of: first).filter { !($0.1 is [Any]) || $0.1 is [UInt8] }.map(\.0).prefix(7))
      let cells = rows.map { row in
        let values = Dictionary(self.fields(of: row).map { ($0.0, self.cell($0.1)) }, uniquingKeysWith: { a, _ in a })
        return columns.map { values[$0] ?? "" }
      }
      var lines = [self.table(header: columns, rows: cells)]
      if let next = fields.first(where: { $0.0 == "page" }), !self.cell(next.1).isEmpty {
        lines.append(
          "more: --request 'page { page_token: \"\(self.cell(next.1).replacingOccurrences(of: "nextPageToken=", with: ""))\" }'"
        )
      }
      return lines.joined(separator: "\n")
    }
    return self.lines(fields, indent: "").joined(separator: "\n")
  }

  static func lines(_ fields: [(String, Any)], indent: String) -> [String] {
    fields.flatMap { name, value -> [String] in
      if Mirror(reflecting: value).displayStyle == .struct && !(value is any NestEnum) && self.cell(value).contains("=")
      {
        return ["\(indent)\(name):"] + self.lines(self.fields(of: value), indent: indent + "  ")
      }
      return ["\(indent)\(name): \(self.cell(value))"]
    }
  }

  static func table(header: [String], rows: [[String]]) -> String {
    let widths = header.indices.map { column in
      ([header[column]] + rows.map { $0[column] }).map(\.count).max() ?? 0
    }
    func line(_ cells: [String]) -> String {
      cells.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        .trimmingCharacters(in: .whitespaces)
    }
    return ([line(header.map { $0.uppercased() })] + rows.map(line)).joined(separator: "\n")
  }
}
