// Every RPC of the four services from the command line: `nestctl catalog create-service
// name=Analytics type=SERVICE_TYPE_PRIVATE ...`. Requests are written as `field=value` pairs
// (dots for nested fields; a repeated field may be given more than once) or as protobuf text
// format with --request, and encoded by `protoc --encode` against the project's own proto
// files; `nestctl call` does the same for any method at any address.
import ArgumentParser
import Foundation
import GRPCCore
import NestAuth
import NestDomain
import NestProto
import NestServiceKit
import NestTransport

/// The RPCs of one service, from its generated descriptors.
struct ServiceMethods {
  var group: String
  var service: NestServiceName
  var descriptors: [MethodDescriptor]

  static let all: [ServiceMethods] = [
    .init(group: "catalog", service: .catalog, descriptors: Nest_Catalog_V1_CatalogService.Method.descriptors),
    .init(
      group: "entitlement", service: .entitlement,
      descriptors: Nest_Entitlement_V1_EntitlementService.Method.descriptors),
    .init(group: "order", service: .order, descriptors: Nest_Order_V1_MarketplaceOrderService.Method.descriptors),
    .init(
      group: "settlement", service: .settlement, descriptors: Nest_Settlement_V1_SettlementService.Method.descriptors),
  ]

  /// `CreateService` -> `create-service`.
  static func command(_ method: String) -> String {
    var name = ""
    for character in method {
      if character.isUppercase && !name.isEmpty { name.append("-") }
      name.append(contentsOf: character.lowercased())
    }
    return name
  }

  func descriptor(command: String) -> MethodDescriptor? {
    self.descriptors.first { Self.command($0.method) == command }
  }

  /// Every RPC's request and response type follow the `<Method>Request` / `<Method>Response` names.
  static func types(_ descriptor: MethodDescriptor) -> (request: any NestMessage.Type, response: any NestMessage.Type)?
  {
    let package = descriptor.service.fullyQualifiedService.split(separator: ".").dropLast().joined(separator: ".")
    guard let request = NestProtoMessages.byName["\(package).\(descriptor.method)Request"],
      let response = NestProtoMessages.byName["\(package).\(descriptor.method)Response"]
    else { return nil }
    return (request, response)
  }

  /// `CatalogService`, from the descriptors.
  var serviceName: String { String(self.descriptors[0].service.fullyQualifiedService.split(separator: ".").last ?? "") }

  var discussion: String {
    "Methods: " + self.descriptors.map { Self.command($0.method) }.joined(separator: ", ")
  }
}

/// Protobuf text format from `field=value` pairs: numbers, true/false and UPPER_CASE enum
/// names are written as they are, everything else as a quoted string; `field:=value` is
/// written as it is.
enum TextFormat {
  static func from(pairs: [String]) throws -> String {
    var entries: [(path: [String], value: String)] = []
    for pair in pairs {
      guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
        throw ValidationError("\"\(pair)\" is not field=value")
      }
      var path = String(pair[..<equals])
      var value = String(pair[pair.index(after: equals)...])
      if path.hasSuffix(":") {
        path.removeLast()
      } else {
        value = self.literal(value)
      }
      entries.append((path.split(separator: ".").map(String.init), value))
    }
    return self.render(entries)
  }

  static func literal(_ value: String) -> String {
    let bare =
      value == "true" || value == "false" || Int64(value) != nil
      || (value.first?.isUppercase == true && value.allSatisfy { $0.isUppercase || $0.isNumber || $0 == "_" })
    if bare { return value }
    return "\"" + value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
  }

  static func render(_ entries: [(path: [String], value: String)]) -> String {
    var order: [String] = []
    var nested: [String: [(path: [String], value: String)]] = [:]
    var parts: [String] = []
    for entry in entries {
      if entry.path.count == 1 {
        parts.append("\(entry.path[0]): \(entry.value)")
      } else {
        if nested[entry.path[0]] == nil { order.append(entry.path[0]) }
        nested[entry.path[0], default: []].append((Array(entry.path.dropFirst()), entry.value))
      }
    }
    for name in order { parts.append("\(name) { \(self.render(nested[name]!)) }") }
    return parts.joined(separator: " ")
  }
}

/// Where the project's .proto files are: --proto-path, NEST_PROTO_PATH, ./proto, or beside the binary.
func protoRoot(_ flag: String?) throws -> URL {
  let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
  let candidates =
    [flag, ProcessInfo.processInfo.environment["NEST_PROTO_PATH"], "proto"].compactMap { $0 }
    .map { URL(fileURLWithPath: $0) } + [
      executable.appendingPathComponent("../../../proto"), executable.appendingPathComponent("../share/nest/proto"),
    ]
  guard
    let root = candidates.first(where: {
      FileManager.default.fileExists(atPath: $0.appendingPathComponent("nest/common/v1/common.proto").path)
    })
  else { throw ValidationError("cannot find the proto files; pass --proto-path or set NEST_PROTO_PATH") }
  return root.standardizedFileURL
}

/// `protoc --encode` or `--decode` of `type` with the project's proto files.
func protoc(_ mode: String, type: String, input: Data, root: URL) throws -> Data {
  let files = try FileManager.default.subpathsOfDirectory(atPath: root.path).filter { $0.hasSuffix(".proto") }.sorted()
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  process.arguments = ["protoc", "--\(mode)=\(type)", "-I", root.path] + files
  let stdin = Pipe()
  let stdout = Pipe()
  let stderr = Pipe()
  process.standardInput = stdin
  process.standardOutput = stdout
  process.standardError = stderr
  try process.run()
  stdin.fileHandleForWriting.write(input)
  try stdin.fileHandleForWriting.close()
  let output = stdout.fileHandleForReading.readDataToEndOfFile()
  let errors = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
  process.waitUntilExit()
  guard process.terminationStatus == 0 else {
    throw ValidationError("protoc could not \(mode) \(type): \(errors.trimmingCharacters(in: .whitespacesAndNewlines))")
  }
  return output
}

/// `nestctl <service> <method> [field=value ...]`.
struct ServiceCall {
  static func run(
    _ methods: ServiceMethods, method: String, fields: [String], request: String?, json: Bool, protoPath: String?,
    connection: ConnectionOptions
  ) async throws {
    guard let descriptor = methods.descriptor(command: method) else {
      throw ValidationError("\(methods.group) has no method \"\(method)\". \(methods.discussion)")
    }
    guard let (requestType, responseType) = ServiceMethods.types(descriptor) else {
      throw ValidationError("no message types for \(descriptor)")
    }
    let text = try request ?? TextFormat.from(pairs: fields)
    let bytes =
      text.isEmpty
      ? Data()
      : try protoc("encode", type: requestType.protoMessageName, input: Data(text.utf8), root: try protoRoot(protoPath))
    try await reportingErrors {
      let answer = try await connection.withClient(methods.service) {
        try await $0.unaryRaw(descriptor, Array(bytes), options: .defaults)
      }
      let response = try responseType.init(serializedBytes: answer)
      print(json ? Output.jsonText(response) : Output.human(response))
    }
  }
}

/// Which service a `nestctl <service>` command calls.
protocol ServiceGroup {
  static var methods: ServiceMethods { get }
}

enum CatalogGroup: ServiceGroup { static var methods: ServiceMethods { ServiceMethods.all[0] } }
enum EntitlementGroup: ServiceGroup { static var methods: ServiceMethods { ServiceMethods.all[1] } }
enum OrderGroup: ServiceGroup { static var methods: ServiceMethods { ServiceMethods.all[2] } }
enum SettlementGroup: ServiceGroup { static var methods: ServiceMethods { ServiceMethods.all[3] } }

/// `nestctl <service> <method> [field=value ...]`: one command per service, the method a
/// kebab-case argument.
struct GroupCommand<Group: ServiceGroup>: AsyncParsableCommand {
  static var configuration: CommandConfiguration {
    CommandConfiguration(
      commandName: Group.methods.group, abstract: "Call an RPC of \(Group.methods.serviceName).",
      discussion: Group.methods.discussion)
  }

  @Argument(help: "The method, e.g. \(ServiceMethods.command(Group.methods.descriptors[0].method)).") var method: String
  @Argument(help: "Request fields as field=value (nested: a.b=value).") var fields: [String] = []
  @Option(help: "The whole request in protobuf text format.") var request: String?
  @Flag(help: "Print JSON instead of a table.") var json = false
  @Option(help: "Where the .proto files are (NEST_PROTO_PATH).") var protoPath: String?
  @OptionGroup var connection: ConnectionOptions

  func run() async throws {
    try await ServiceCall.run(
      Group.methods, method: self.method, fields: self.fields, request: self.request, json: self.json,
      protoPath: self.protoPath, connection: self.connection)
  }
}

/// `nestctl call ADDRESS /package.Service/Method`: a grpcurl for this protocol.
struct CallCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "call",
    abstract: "Call any method at any address; the request and response in protobuf text format.",
    discussion: "The request is read from --request or, if absent, from standard input.")

  @Argument(help: "host:port of the service.") var address: String
  @Argument(help: "The method, e.g. /nest.catalog.v1.CatalogService/GetService.") var method: String
  @Option(help: "The request in protobuf text format.") var request: String?
  @Option(help: "Bearer token (NEST_TOKEN).") var token: String?
  @Option(help: "Where the .proto files are (NEST_PROTO_PATH).") var protoPath: String?

  func run() async throws {
    let address: ServiceAddress
    do { address = try ServiceAddress(parsing: self.address) } catch { throw ValidationError(error.description) }
    let parts = self.method.split(separator: "/").map(String.init)
    guard parts.count == 2 else { throw ValidationError("the method must look like /package.Service/Method") }
    let descriptor = MethodDescriptor(fullyQualifiedService: parts[0], method: parts[1])
    let requestType: String
    let responseType: String
    if let (request, response) = ServiceMethods.types(descriptor) {
      (requestType, responseType) = (request.protoMessageName, response.protoMessageName)
    } else if descriptor.fullyQualifiedMethod == "nest.health.v1.Health/Check" {
      (requestType, responseType) = ("nest.health.v1.HealthCheckRequest", "nest.health.v1.HealthCheckResponse")
    } else {
      throw ValidationError("unknown method \(self.method)")
    }
    let root = try protoRoot(self.protoPath)
    let text = self.request.map { Data($0.utf8) } ?? FileHandle.standardInput.readDataToEndOfFile()
    let bytes = try protoc("encode", type: requestType, input: text, root: root)
    var connection = try ConnectionOptions.parse([])
    connection.token = self.token
    try await reportingErrors {
      let answer = try await withGRPCClient(
        transport: NestClientTransport(.init(host: address.host, port: address.port, peerName: "nestctl/0.1.0")),
        interceptors: connection.bearer.map { [BearerTokenClientInterceptor(token: $0)] } ?? []
      ) { try await $0.unaryRaw(descriptor, Array(bytes)) }
      let decoded = try protoc("decode", type: responseType, input: Data(answer), root: root)
      FileHandle.standardOutput.write(decoded)
    }
  }
}
