// protoc-gen-nest-swift's work: for each requested .proto file, a `.pb.swift` with its
// messages and enums and, when it declares services, a `.grpc.swift` rendered by
// GRPCCodeGen; plus one registry file per module listing every message type.
import GRPCCodeGen

public struct GeneratedFile: Hashable, Sendable {
  public var name: String
  public var content: String
}

public struct GeneratorOptions: Sendable {
  /// The C module protoc-c's code for these files lives in (scripts/generate-proto).
  public var cModule = "CNestProto"
  /// The name of the generated enum listing every message type of the module.
  public var registry = "NestProtoMessages"
  /// Whether every RPC must declare `(nest.access.v1.method)`; then the registry also
  /// carries the access tables.
  public var accessRequired = false

  /// Parses protoc's `--nest-swift_opt=CModule=...,Registry=...`.
  public init(parameter: String) throws {
    for option in parameter.split(separator: ",") where !option.isEmpty {
      let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
      guard parts.count == 2 else { throw GeneratorError("option '\(option)' is not KEY=VALUE") }
      switch parts[0] {
      case "CModule": self.cModule = parts[1]
      case "Registry": self.registry = parts[1]
      case "Access":
        guard ["required", "none"].contains(parts[1]) else {
          throw GeneratorError("option Access must be 'required' or 'none', not '\(parts[1])'")
        }
        self.accessRequired = parts[1] == "required"
      default: throw GeneratorError("unknown option '\(parts[0])' (known: CModule, Registry, Access)")
      }
    }
  }
}

public struct GeneratorError: Error, CustomStringConvertible {
  public var description: String
  init(_ description: String) { self.description = description }
}

public func generate(_ request: PluginRequest) throws -> [GeneratedFile] {
  let options = try GeneratorOptions(parameter: request.parameter)
  let types = TypeTable(files: request.files)
  let emitter = MessageEmitter(types: types, redacted: try types.redactedMessages())
  let targets = request.files.filter { request.filesToGenerate.contains($0.name) }
  var output: [GeneratedFile] = []

  // SwiftPM names object files by a source's base name: files whose base names meet
  // (nest/health/v1/health.proto and grpc/health/v1/health.proto) are named after their
  // packages instead.
  func stem(_ name: String) -> String {
    let base = name.hasSuffix(".proto") ? String(name.dropLast(6)) : name
    return String(base.split(separator: "/").last ?? Substring(base))
  }
  var stems: [String: Int] = [:]
  for file in targets { stems[stem(file.name), default: 0] += 1 }

  for file in targets {
    for message in file.allMessages {
      for field in message.fields where field.isProto3Optional {
        throw GeneratorError(
          "\(message.fullName).\(field.name): proto3 optional is not supported by protobuf-c 1.4; use a oneof or a wrapper message"
        )
      }
    }
    var base = file.name.hasSuffix(".proto") ? String(file.name.dropLast(6)) : file.name
    if stems[stem(file.name), default: 0] > 1 {
      let directory = base.split(separator: "/").dropLast().joined(separator: "/")
      base = (directory.isEmpty ? "" : directory + "/") + file.package + "." + stem(file.name)
    }
    var content = header(source: file.name)
    content += "import \(options.cModule)\nimport NestProtoRuntime\n"
    for enumeration in file.enums { content += "\n" + emitter.render(enumeration, indent: "") }
    for message in file.messages where !message.isMapEntry {
      content += "\n" + (try emitter.render(message, indent: ""))
    }
    output.append(GeneratedFile(name: base + ".pb.swift", content: content))

    if !file.services.isEmpty {
      output.append(GeneratedFile(name: base + ".grpc.swift", content: try renderServices(file, types)))
    }
  }

  let messages = targets.flatMap(\.allMessages).filter { !$0.isMapEntry }
  var registry = header(source: targets.map(\.name).joined(separator: ", "))
  registry += "import \(options.cModule)\n"
  registry += "// Users of the generated types need the runtime's API (serializedBytes, with, ...).\n"
  registry += "@_exported import NestProtoRuntime\n\n"
  registry += "/// Every message type generated in this module, by full proto name: for tools and\n"
  registry += "/// tests that work from a name (fuzzers, golden files, `nestctl call`).\n"
  registry += "public enum \(options.registry) {\n"
  registry += "  public static let all: [any NestMessage.Type] = [\n"
  for message in messages { registry += "    \(types.swiftName(message.fullName)).self,\n" }
  registry += "  ]\n\n"
  registry += "  public static let byName: [String: any NestMessage.Type] = Dictionary(\n"
  registry += "    uniqueKeysWithValues: all.map { ($0.protoMessageName, $0) })\n\n"
  let streaming = targets.flatMap { file in
    file.services.flatMap { service in
      service.methods.filter { $0.clientStreaming || $0.serverStreaming }.map { "/\(service.fullName)/\($0.name)" }
    }
  }
  registry += "  /// The streaming methods of this module's services, by wire path: wire protocol v1\n"
  registry += "  /// carries their messages in MESSAGE frames.\n"
  registry += "  public static let streamingMethods: Set<String> = [\n"
  for path in streaming.sorted() { registry += "    \"\(path)\",\n" }
  registry += "  ]\n"
  registry += "}\n\n"
  registry += "/// protoc-c's descriptors for this module's messages.\n"
  registry +=
    "let _nestCDescriptors = NestCDescriptorTable { \(options.cModule.lowercased())_message_descriptors($0) }\n"
  if options.accessRequired {
    registry += "\n" + (try renderAccessTable(targets, types))
  }
  output.append(GeneratedFile(name: options.registry + ".swift", content: registry))
  return output
}

/// NestAccessTable: every RPC's `(nest.access.v1.method)` and every field's
/// `(nest.access.v1.field)`, checked for sense and rendered as Swift values.
private func renderAccessTable(_ files: [ProtoFile], _ types: TypeTable) throws -> String {
  func roles(_ numbers: [Int32]) -> String {
    "[" + numbers.map { "." + types.enumCase("nest.common.v1.Role", $0) }.joined(separator: ", ") + "]"
  }
  var out = "/// Who may call each RPC and who may read each field, as declared in the .proto files with\n"
  out += "/// `(nest.access.v1.method)` and `(nest.access.v1.field)`.\n"
  out += "public enum NestAccessTable {\n"
  out += "  /// By fully qualified method, `package.Service/Method`.\n"
  out += "  public static let methods: [String: Nest_Access_V1_MethodAccess] = [\n"
  for file in files {
    for service in file.services {
      for method in service.methods {
        let path = "\(service.fullName)/\(method.name)"
        guard let access = try method.access() else {
          throw GeneratorError("\(path) declares no (nest.access.v1.method): say who may call it")
        }
        var problems: [String] = []
        if access.open && !access.roles.isEmpty { problems.append("an open method names no roles") }
        if !access.open && access.roles.isEmpty { problems.append("no roles may call it") }
        if access.roles.contains(5) && access.services.isEmpty {
          problems.append("ROLE_SERVICE needs the services that may call it")
        }
        if !access.roles.contains(5) && !access.services.isEmpty {
          problems.append("services are named but ROLE_SERVICE is not among the roles")
        }
        if access.relation != 0 && access.resource.isEmpty { problems.append("a relation needs its resource") }
        guard problems.isEmpty else {
          throw GeneratorError("\(path): \(problems.joined(separator: "; "))")
        }
        var fields: [String] = []
        if access.open { fields.append("$0.open = true") }
        if !access.roles.isEmpty { fields.append("$0.roles = \(roles(access.roles))") }
        if !access.services.isEmpty {
          fields.append("$0.services = [\(access.services.map { "\"\($0)\"" }.joined(separator: ", "))]")
        }
        if !access.resource.isEmpty { fields.append("$0.resource = \"\(access.resource)\"") }
        if access.relation != 0 {
          fields.append("$0.relation = .\(types.enumCase("nest.access.v1.Relation", access.relation))")
        }
        out += "    \"\(path)\": .with { \(fields.joined(separator: "; ")) },\n"
      }
    }
  }
  out += "  ]\n\n"
  out += "  /// Fields only some roles may read: by message full name, field number -> readers.\n"
  out += "  public static let fields: [String: [Int32: [Nest_Common_V1_Role]]] = [\n"
  for file in files {
    for message in file.allMessages {
      let restricted = try message.fields.compactMap { field in try field.access().map { (field.number, $0) } }
      guard !restricted.isEmpty else { continue }
      let entries = restricted.map { "\($0.0): \(roles($0.1.readers))" }.joined(separator: ", ")
      out += "    \"\(message.fullName)\": [\(entries)],\n"
    }
  }
  out += "  ]\n}\n"
  return out
}

private func header(source: String) -> String {
  """
  // DO NOT EDIT. Generated by protoc-gen-nest-swift from \(source).
  // Regenerate with scripts/generate-proto.
  // swift-format-ignore-file

  """
}

private func renderServices(_ file: ProtoFile, _ types: TypeTable) throws -> String {
  let prefix = SwiftNaming.typePrefix(package: file.package)
  let propertyPrefix = file.package.split(separator: ".").joined(separator: "_") + "_"
  let services = file.services.map { service in
    ServiceDescriptor(
      documentation: SwiftNaming.docComment(service.comments, indent: ""),
      name: ServiceName(
        identifyingName: service.fullName,
        typeName: prefix + service.name,
        propertyName: propertyPrefix + service.name
      ),
      methods: service.methods.map { method in
        MethodDescriptor(
          documentation: SwiftNaming.docComment(method.comments, indent: ""),
          name: MethodName(
            identifyingName: method.name,
            typeName: method.name,
            functionName: SwiftNaming.lowerCamel(SwiftNaming.upperSnake(method.name))
          ),
          isInputStreaming: method.clientStreaming,
          isOutputStreaming: method.serverStreaming,
          inputType: types.swiftName(method.inputType),
          outputType: types.swiftName(method.outputType)
        )
      }
    )
  }
  let request = CodeGenerationRequest(
    fileName: file.name,
    leadingTrivia: header(source: file.name),
    dependencies: [Dependency(module: "NestProtoRuntime", accessLevel: .public)],
    services: services,
    makeSerializerCodeSnippet: { "NestProtoRuntime.NestProtoSerializer<\($0)>()" },
    makeDeserializerCodeSnippet: { "NestProtoRuntime.NestProtoDeserializer<\($0)>()" }
  )
  let config = CodeGenerator.Config(
    accessLevel: .public, accessLevelOnImports: false, client: true, server: true, indentation: 2)
  return try CodeGenerator(config: config).generate(request).contents
}
