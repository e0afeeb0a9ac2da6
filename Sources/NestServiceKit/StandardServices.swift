// The standard gRPC services every Nest service serves beside its own, so that standard tools
// can ask it: grpc.health.v1.Health (Check, List, Watch; what Kubernetes' gRPC probes and
// grpc_health_probe call) and grpc.reflection.v1 server reflection over the descriptors of
// proto/ embedded in the build (what grpcurl and grpcio-reflection read), on both ports
// (wire protocol v1 carries their streams in MESSAGE frames).
import Foundation
public import GRPCCore
import NIOConcurrencyHelpers
public import NestProto
import ServiceLifecycle

/// Where a server's services stand: SERVING until it starts draining, then NOT_SERVING. Shared
/// by both listeners and both health services, and by the admin port's /readyz.
public final class ServingState: Sendable {
  private let draining = NIOLockedValueBox(false)
  private let watchers = NIOLockedValueBox<[UUID: AsyncStream<Void>.Continuation]>([:])
  /// The fully qualified names of the services served ("" is the server as a whole).
  public let services: Set<String>

  public init(services: [String]) {
    self.services = Set(services + [""])
  }

  public var isServing: Bool { !self.draining.withLockedValue { $0 } }

  /// The server starts draining: every watcher hears NOT_SERVING, and then its stream ends
  /// (draining is final), so that no Watch keeps the server from stopping.
  public func drain() {
    self.draining.withLockedValue { $0 = true }
    for watcher in self.watchers.withLockedValue({ $0.values }) {
      watcher.yield()
      watcher.finish()
    }
  }

  /// A stream that yields whenever the state changes, until `body` returns.
  func watching<R>(_ body: (AsyncStream<Void>) async throws -> R) async rethrows -> R {
    let id = UUID()
    let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    self.watchers.withLockedValue { $0[id] = continuation }
    // Already draining: nothing will change any more.
    if !self.isServing { continuation.finish() }
    defer {
      self.watchers.withLockedValue { $0[id] = nil }
      continuation.finish()
    }
    return try await body(stream)
  }
}

/// grpc.health.v1.Health.
public struct StandardHealthService: Grpc_Health_V1_Health.SimpleServiceProtocol {
  let state: ServingState

  public init(state: ServingState) {
    self.state = state
  }

  func status(_ service: String) -> Grpc_Health_V1_HealthCheckResponse.ServingStatus {
    guard self.state.services.contains(service) else { return .serviceUnknown }
    return self.state.isServing ? .serving : .notServing
  }

  public func check(request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext) async throws
    -> Grpc_Health_V1_HealthCheckResponse
  {
    let status = self.status(request.service)
    guard status != .serviceUnknown else {
      throw RPCError(code: .notFound, message: "service \"\(request.service)\" is not served here")
    }
    return .with { $0.status = status }
  }

  public func list(request: Grpc_Health_V1_HealthListRequest, context: ServerContext) async throws
    -> Grpc_Health_V1_HealthListResponse
  {
    .with { response in
      for service in self.state.services {
        response.statuses[service] = .with { $0.status = self.status(service) }
      }
    }
  }

  public func watch(
    request: Grpc_Health_V1_HealthCheckRequest, response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
    context: ServerContext
  ) async throws {
    try await self.state.watching { changes in
      var last = self.status(request.service)
      try await response.write(.with { $0.status = last })
      // Until the caller goes away (or the server stops): each change of status.
      for await _ in changes {
        let now = self.status(request.service)
        guard now != last else { continue }
        last = now
        try await response.write(.with { $0.status = now })
      }
    }
  }
}

/// grpc.reflection.v1 over `NestDescriptorFiles`.
public struct ReflectionService: Grpc_Reflection_V1_ServerReflection.SimpleServiceProtocol {
  let index: DescriptorIndex
  let services: [String]

  /// `services`: the fully qualified services served here (listed by `list_services`).
  public init(services: [String]) {
    self.index = DescriptorIndex.shared
    self.services = services
  }

  public func serverReflectionInfo(
    request: RPCAsyncSequence<Grpc_Reflection_V1_ServerReflectionRequest, any Error>,
    response: RPCWriter<Grpc_Reflection_V1_ServerReflectionResponse>, context: ServerContext
  ) async throws {
    for try await question in request { try await response.write(self.answer(question)) }
  }

  func answer(_ question: Grpc_Reflection_V1_ServerReflectionRequest) -> Grpc_Reflection_V1_ServerReflectionResponse {
    var answer = Grpc_Reflection_V1_ServerReflectionResponse.with {
      $0.validHost = question.host
      $0.originalRequest = question
    }
    func files(_ name: String?) -> Grpc_Reflection_V1_ServerReflectionResponse.OneOf_MessageResponse {
      guard let name else {
        return .errorResponse(
          .with {
            $0.errorCode = Int32(RPCError.Code.notFound.rawValue)
            $0.errorMessage = "not found"
          })
      }
      return .fileDescriptorResponse(.with { $0.fileDescriptorProto = self.index.withDependencies(name) })
    }
    switch question.messageRequest {
    case .listServices?:
      answer.messageResponse = .listServicesResponse(
        .with { list in list.service = self.services.sorted().map { name in .with { $0.name = name } } })
    case .fileByFilename(let name)?:
      answer.messageResponse = files(self.index.files[name] == nil ? nil : name)
    case .fileContainingSymbol(let symbol)?:
      answer.messageResponse = files(self.index.file(containing: symbol))
    case .fileContainingExtension(let extensionRequest)?:
      answer.messageResponse = files(
        self.index.extensions[extensionRequest.containingType]?[extensionRequest.extensionNumber])
    case .allExtensionNumbersOfType(let type)?:
      answer.messageResponse = .allExtensionNumbersResponse(
        .with {
          $0.baseTypeName = type
          $0.extensionNumber = (self.index.extensions[type] ?? [:]).keys.sorted()
        })
    case nil:
      answer.messageResponse = .errorResponse(
        .with {
          $0.errorCode = Int32(RPCError.Code.invalidArgument.rawValue)
          $0.errorMessage = "no request"
        })
    }
    return answer
  }
}

/// grpc.reflection.v1alpha, the same protocol under its earlier name (grpcio-reflection's
/// client asks for it): each request read as v1 and each answer written back as v1alpha
/// (the messages are the same on the wire).
public struct ReflectionV1AlphaService: Grpc_Reflection_V1alpha_ServerReflection.SimpleServiceProtocol {
  let v1: ReflectionService

  public init(_ v1: ReflectionService) {
    self.v1 = v1
  }

  public func serverReflectionInfo(
    request: RPCAsyncSequence<Grpc_Reflection_V1alpha_ServerReflectionRequest, any Error>,
    response: RPCWriter<Grpc_Reflection_V1alpha_ServerReflectionResponse>, context: ServerContext
  ) async throws {
    for try await question in request {
      let answer = self.v1.answer(
        try Grpc_Reflection_V1_ServerReflectionRequest(serializedBytes: try question.serializedBytes()))
      try await response.write(
        try Grpc_Reflection_V1alpha_ServerReflectionResponse(serializedBytes: try answer.serializedBytes()))
    }
  }
}

/// The embedded descriptors: each file's FileDescriptorProto bytes, what it imports, and which
/// file defines each symbol (packages, messages, enums, services, methods, extensions).
struct DescriptorIndex: Sendable {
  var files: [String: [UInt8]] = [:]
  var dependencies: [String: [String]] = [:]
  var symbols: [String: String] = [:]
  /// Extended type -> extension number -> file.
  var extensions: [String: [Int32: String]] = [:]

  static let shared = DescriptorIndex(NestDescriptorFiles.sets)

  init(_ sets: [(name: String, base64: String)]) {
    for (name, base64) in sets {
      // A FileDescriptorSet of one file: field 1, the file's bytes.
      guard let set = Data(base64Encoded: base64), let file = WireFields(Array(set)).bytes(1).first else { continue }
      self.files[name] = file
      let fields = WireFields(file)
      self.dependencies[name] = fields.strings(3)
      let package = fields.strings(2).first ?? ""
      let prefix = package.isEmpty ? "" : package + "."
      if !package.isEmpty { self.symbols[package] = name }
      func messages(_ list: [[UInt8]], scope: String) {
        for message in list {
          let fields = WireFields(message)
          let full = scope + (fields.strings(1).first ?? "")
          self.symbols[full] = name
          messages(fields.bytes(3), scope: full + ".")
          for enumeration in fields.bytes(4) {
            self.symbols[full + "." + (WireFields(enumeration).strings(1).first ?? "")] = name
          }
          for field in fields.bytes(6) { self.noteExtension(WireFields(field), scope: full + ".", file: name) }
        }
      }
      messages(fields.bytes(4), scope: prefix)
      for enumeration in fields.bytes(5) {
        self.symbols[prefix + (WireFields(enumeration).strings(1).first ?? "")] = name
      }
      for service in fields.bytes(6) {
        let serviceFields = WireFields(service)
        let full = prefix + (serviceFields.strings(1).first ?? "")
        self.symbols[full] = name
        for method in serviceFields.bytes(2) {
          self.symbols[full + "." + (WireFields(method).strings(1).first ?? "")] = name
        }
      }
      for field in fields.bytes(7) { self.noteExtension(WireFields(field), scope: prefix, file: name) }
    }
  }

  /// An extension field (FieldDescriptorProto: 1 name, 3 number, 2 extendee).
  private mutating func noteExtension(_ field: WireFields, scope: String, file: String) {
    self.symbols[scope + (field.strings(1).first ?? "")] = file
    let extendee = (field.strings(2).first ?? "").trimmingPrefix(".")
    if let number = field.varints(3).first { self.extensions[String(extendee), default: [:]][Int32(number)] = file }
  }

  /// The file defining `symbol` ("pkg.Service", "pkg.Service.Method", "pkg.Message"...).
  func file(containing symbol: String) -> String? { self.symbols[symbol.trimmingPrefix(".").description] }

  /// `name`'s bytes, then those of everything it imports (each once).
  func withDependencies(_ name: String) -> [[UInt8]] {
    var order: [String] = []
    var seen: Set<String> = []
    func visit(_ file: String) {
      guard seen.insert(file).inserted, self.files[file] != nil else { return }
      order.append(file)
      for dependency in self.dependencies[file] ?? [] { visit(dependency) }
    }
    visit(name)
    return order.compactMap { self.files[$0] }
  }
}

/// The top-level fields of an encoded protobuf message, enough to read descriptors: varints
/// and length-delimited fields by number.
struct WireFields {
  private var lengthDelimited: [Int: [[UInt8]]] = [:]
  private var varint: [Int: [UInt64]] = [:]

  init(_ bytes: [UInt8]) {
    var index = 0
    func readVarint() -> UInt64? {
      var value: UInt64 = 0
      var shift: UInt64 = 0
      while index < bytes.count, shift < 64 {
        let byte = bytes[index]
        index += 1
        value |= UInt64(byte & 0x7F) << shift
        if byte & 0x80 == 0 { return value }
        shift += 7
      }
      return nil
    }
    while index < bytes.count, let key = readVarint() {
      let number = Int(key >> 3)
      switch key & 7 {
      case 0:
        guard let value = readVarint() else { return }
        self.varint[number, default: []].append(value)
      case 1: index += 8
      case 2:
        guard let length = readVarint(), index + Int(length) <= bytes.count else { return }
        self.lengthDelimited[number, default: []].append(Array(bytes[index..<index + Int(length)]))
        index += Int(length)
      case 5: index += 4
      default: return
      }
    }
  }

  func bytes(_ number: Int) -> [[UInt8]] { self.lengthDelimited[number] ?? [] }
  func strings(_ number: Int) -> [String] { self.bytes(number).map { String(decoding: $0, as: UTF8.self) } }
  func varints(_ number: Int) -> [UInt64] { self.varint[number] ?? [] }
}
