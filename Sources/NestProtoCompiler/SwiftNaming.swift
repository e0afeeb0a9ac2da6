// How proto names become Swift names, following swift-protobuf's conventions so the types
// read as users of grpc-swift expect: package `nest.catalog.v1` + message `Service` =
// `Nest_Catalog_V1_Service`; field `unit_price` = `unitPrice`; enum value
// `SERVICE_TYPE_FULLY_MANAGED` of `ServiceType` = `.fullyManaged`.

enum SwiftNaming {
  static let keywords: Set<String> = [
    "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import",
    "init", "inout", "internal", "let", "open", "operator", "private", "precedencegroup",
    "protocol", "public", "rethrows", "static", "struct", "subscript", "typealias", "var",
    "break", "case", "catch", "continue", "default", "defer", "do", "else", "fallthrough",
    "for", "guard", "if", "in", "repeat", "return", "throw", "switch", "where", "while",
    "Any", "as", "await", "false", "is", "nil", "self", "Self", "super", "throws", "true",
    "try", "Type", "Protocol",
  ]

  /// `nest.catalog.v1` -> `Nest_Catalog_V1_`.
  static func typePrefix(package: String) -> String {
    guard !package.isEmpty else { return "" }
    return package.split(separator: ".").map { upperCamel(String($0)) }.joined(separator: "_") + "_"
  }

  /// `foo_bar` -> `FooBar`, `v1` -> `V1`.
  static func upperCamel(_ name: String) -> String {
    name.split(separator: "_").map { part in
      part.prefix(1).uppercased() + part.dropFirst()
    }.joined()
  }

  /// Words written in capitals after the first word, as swift-protobuf does: `call_id` ->
  /// `callID`, `logon_url` -> `logonURL`.
  static let acronyms: Set<String> = ["id", "url", "uri", "http", "https", "json"]

  /// `unit_price` -> `unitPrice`, `SCENARIO_1` -> `scenario1`, `URL` -> `url`.
  static func lowerCamel(_ name: String) -> String {
    let parts = name.split(separator: "_").map(String.init)
    guard let first = parts.first else { return name }
    let head = first == first.uppercased() ? first.lowercased() : first.prefix(1).lowercased() + first.dropFirst()
    let tail = parts.dropFirst().map { part -> String in
      if acronyms.contains(part.lowercased()) { return part.uppercased() }
      let lowered = part == part.uppercased() ? part.lowercased() : part
      return lowered.prefix(1).uppercased() + lowered.dropFirst()
    }
    return head + tail.joined()
  }

  /// `ServiceType` -> `SERVICE_TYPE`.
  static func upperSnake(_ name: String) -> String {
    var result = ""
    var previous: Character? = nil
    for character in name {
      if character.isUppercase, let previous, previous.isLowercase || previous.isNumber {
        result += "_"
      }
      result += character.uppercased()
      previous = character
    }
    return result
  }

  /// A name usable as an identifier after a declaration keyword.
  static func escaped(_ name: String) -> String {
    keywords.contains(name) ? "`\(name)`" : name
  }

  /// The Swift case of an enum value: its name without the enum's prefix, lower camel case.
  static func enumCase(_ value: String, enumName: String) -> String {
    let prefix = upperSnake(enumName) + "_"
    var stripped = value
    if value.hasPrefix(prefix) {
      stripped = String(value.dropFirst(prefix.count))
    }
    if stripped.isEmpty || stripped.first!.isNumber {
      stripped = value
    }
    return lowerCamel(stripped)
  }

  /// Proto comments as `///` lines at `indent`.
  static func docComment(_ comments: String, indent: String) -> String {
    let trimmed = comments.split(separator: "\n", omittingEmptySubsequences: false)
      .map { $0.hasPrefix(" ") ? String($0.dropFirst()) : String($0) }
    var lines = Array(trimmed)
    while lines.last?.trimmingWhitespace().isEmpty == true { lines.removeLast() }
    while lines.first?.trimmingWhitespace().isEmpty == true { lines.removeFirst() }
    return lines.map { line in
      line.isEmpty ? "\(indent)///\n" : "\(indent)/// \(line)\n"
    }.joined()
  }
}

extension String {
  func trimmingWhitespace() -> Substring {
    self.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed()
      .reduce(into: Substring()) { $0.append($1) }
  }
}
