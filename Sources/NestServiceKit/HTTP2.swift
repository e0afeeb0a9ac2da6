// Standard gRPC over HTTP/2 (grpc-swift-nio-transport) beside wire protocol v1: the same
// services, interceptors and protobuf-c codec on a second port, plaintext or TLS, so that any
// gRPC client (Go, Java, Python, grpcurl, a mesh, a Kubernetes probe) can call a service; and
// peers reached over HTTP/2 when their address says `grpc://`.
import Foundation
public import GRPCCore
import GRPCNIOTransportHTTP2
public import Logging
import Metrics
import NIOCore
import NestProto
import NestTransport
public import ServiceLifecycle

/// Serves gRPC over HTTP/2 on an address or an inherited listening socket; with `announce`,
/// prints `grpc listening on HOST:PORT` once bound.
public struct HTTP2Listener: ServiceListener {
  public enum Address: Sendable {
    case host(String, port: Int)
    /// An inherited, already listening socket (`--grpc-listen-fd`).
    case socket(CInt)
  }

  /// PEM files of the certificate chain and its private key; nil serves plaintext.
  public struct TLSFiles: Sendable {
    public var certificateChain: String
    public var privateKey: String

    public init(certificateChain: String, privateKey: String) {
      self.certificateChain = certificateChain
      self.privateKey = privateKey
    }
  }

  let address: Address
  let tls: TLSFiles?
  let announce: Bool

  public init(_ address: Address, tls: TLSFiles? = nil, announce: Bool = false) {
    self.address = address
    self.tls = tls
    self.announce = announce
  }

  public func server(services: [any RegistrableRPCService], interceptors: [any ServerInterceptor], logger: Logger)
    -> any Service
  {
    let security: HTTP2ServerTransport.Posix.TransportSecurity =
      self.tls.map {
        .tls(
          certificateChain: [.file(path: $0.certificateChain, format: .pem)],
          privateKey: .file(path: $0.privateKey, format: .pem))
      } ?? .plaintext
    // Open connections, as the wire protocol's listener counts its own.
    var config = HTTP2ServerTransport.Posix.Config.defaults
    config.channelDebuggingCallbacks.onAcceptTCPConnection = { channel in
      let open = Meter(label: "nest_connections_open", dimensions: [("transport", "grpc")])
      open.increment()
      channel.closeFuture.whenComplete { _ in open.decrement() }
      return channel.eventLoop.makeSucceededVoidFuture()
    }
    let transport: HTTP2ServerTransport.Posix
    switch self.address {
    case .host(let host, let port):
      transport = HTTP2ServerTransport.Posix(
        address: .ipv4(host: host, port: port), transportSecurity: security, config: config)
    case .socket(let descriptor):
      transport = HTTP2ServerTransport.Posix(
        listeningSocketDescriptor: Int(descriptor), transportSecurity: security, config: config)
    }
    let server = GRPCServer(
      transport: transport, services: services, interceptors: [StatusDetailsInterceptor()] + interceptors)
    let announce = self.announce
    let tls = self.tls != nil
    return ServerRunner(server: server) {
      guard announce, let address = try await transport.listeningAddress.ipv4 else { return }
      print("grpc\(tls ? " (TLS)" : "") listening on \(address.host):\(address.port)")
      fflush(nil)
    }
  }
}

/// A client of a peer: wire protocol v1, or gRPC over HTTP/2 for a `grpc://` address.
public enum PeerTransport {
  public static func client(
    _ address: ServiceAddress, peerName: String, serviceConfig: ServiceConfig,
    interceptors: [any ClientInterceptor]
  ) throws -> (clients: any ServiceClientSet, runner: any Service) {
    switch address.protocol {
    case .grpc:
      let client = GRPCClient(
        transport: try HTTP2ClientTransport.Posix(
          target: .dns(host: address.host, port: address.port), transportSecurity: .plaintext,
          serviceConfig: serviceConfig),
        // Last, so that it sees the request as it goes out (NestTransport has the same guard
        // built in; see UnaryMessageGuard).
        interceptors: interceptors + [UnaryMessageGuard()])
      return (TypedClients(client), ClientRunner(client: client))
    case .nest:
      let client = GRPCClient(
        transport: NestClientTransport(
          .init(host: address.host, port: address.port, peerName: peerName, serviceConfig: serviceConfig)),
        interceptors: interceptors)
      return (TypedClients(client), ClientRunner(client: client))
    }
  }
}

/// The generated clients of the four services and health, over one GRPCClient.
public protocol ServiceClientSet: Sendable {
  var catalog: any Nest_Catalog_V1_CatalogService.ClientProtocol { get }
  var entitlement: any Nest_Entitlement_V1_EntitlementService.ClientProtocol { get }
  var orders: any Nest_Order_V1_MarketplaceOrderService.ClientProtocol { get }
  var settlement: any Nest_Settlement_V1_SettlementService.ClientProtocol { get }
  var events: any Nest_Events_V1_EventsService.ClientProtocol { get }
  var health: any Nest_Health_V1_Health.ClientProtocol { get }
  /// A unary call with bytes in and out (for clients that encode requests themselves).
  func unaryRaw(_ method: MethodDescriptor, _ request: [UInt8], options: CallOptions) async throws -> [UInt8]
  /// Runs the client's connections until `beginGracefulShutdown()`.
  func runConnections() async throws
  func beginGracefulShutdown()
}

extension ServiceClientSet {
  /// Runs `body` with these clients connected, then shuts them down.
  public func connected<Result: Sendable>(_ body: (any ServiceClientSet) async throws -> Result) async throws -> Result
  {
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await self.runConnections() }
      defer { self.beginGracefulShutdown() }
      return try await body(self)
    }
  }
}

public struct TypedClients<Transport: ClientTransport>: ServiceClientSet {
  let client: GRPCClient<Transport>
  public let catalog: any Nest_Catalog_V1_CatalogService.ClientProtocol
  public let entitlement: any Nest_Entitlement_V1_EntitlementService.ClientProtocol
  public let orders: any Nest_Order_V1_MarketplaceOrderService.ClientProtocol
  public let settlement: any Nest_Settlement_V1_SettlementService.ClientProtocol
  public let events: any Nest_Events_V1_EventsService.ClientProtocol
  public let health: any Nest_Health_V1_Health.ClientProtocol

  public init(_ client: GRPCClient<Transport>) {
    self.client = client
    self.catalog = Nest_Catalog_V1_CatalogService.Client(wrapping: client)
    self.entitlement = Nest_Entitlement_V1_EntitlementService.Client(wrapping: client)
    self.orders = Nest_Order_V1_MarketplaceOrderService.Client(wrapping: client)
    self.settlement = Nest_Settlement_V1_SettlementService.Client(wrapping: client)
    self.events = Nest_Events_V1_EventsService.Client(wrapping: client)
    self.health = Nest_Health_V1_Health.Client(wrapping: client)
  }

  public func unaryRaw(_ method: MethodDescriptor, _ request: [UInt8], options: CallOptions) async throws -> [UInt8] {
    try await self.client.unaryRaw(method, request, options: options)
  }

  public func runConnections() async throws { try await self.client.runConnections() }
  public func beginGracefulShutdown() { self.client.beginGracefulShutdown() }
}

/// Standard gRPC clients read field violations from `grpc-status-details-bin`: a
/// google.rpc.Status whose details hold a google.rpc.BadRequest, as the googleapis error model
/// has it (grpcio-status, grpc-go's status.Details). They also stay in the
/// `nest-field-violations-bin` trailer that Nest clients read.
struct StatusDetailsInterceptor: ServerInterceptor {
  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>, context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    do {
      var response = try await next(request, context)
      // A handler's error comes back as a refused response, an interceptor's as a throw.
      if case .failure(let error) = response.accepted { response.accepted = .failure(Self.withDetails(error)) }
      return response
    } catch let error as RPCError {
      throw Self.withDetails(error)
    }
  }

  static func withDetails(_ error: RPCError) -> RPCError {
    let violations = error.fieldViolations
    guard !violations.isEmpty else { return error }
    var badRequest: [UInt8] = []
    for violation in violations {
      var entry: [UInt8] = []
      Protobuf.appendString(1, violation.field, to: &entry)
      Protobuf.appendString(2, violation.description, to: &entry)
      Protobuf.appendBytes(1, entry, to: &badRequest)
    }
    var any: [UInt8] = []
    Protobuf.appendString(1, "type.googleapis.com/google.rpc.BadRequest", to: &any)
    Protobuf.appendBytes(2, badRequest, to: &any)
    var status: [UInt8] = []
    Protobuf.appendVarint(1, UInt64(error.code.rawValue), to: &status)
    Protobuf.appendString(2, error.message, to: &status)
    Protobuf.appendBytes(3, any, to: &status)
    var copy = error
    copy.metadata.addBinary(status, forKey: "grpc-status-details-bin")
    return copy
  }
}

/// Enough of the protobuf encoding to write the three small google.rpc messages above.
enum Protobuf {
  static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
    var value = value
    while value >= 0x80 {
      bytes.append(UInt8(value & 0x7F) | 0x80)
      value >>= 7
    }
    bytes.append(UInt8(value))
  }

  static func appendVarint(_ field: Int, _ value: UInt64, to bytes: inout [UInt8]) {
    appendVarint(UInt64(field << 3), to: &bytes)
    appendVarint(value, to: &bytes)
  }

  static func appendBytes(_ field: Int, _ value: [UInt8], to bytes: inout [UInt8]) {
    appendVarint(UInt64(field << 3 | 2), to: &bytes)
    appendVarint(UInt64(value.count), to: &bytes)
    bytes += value
  }

  static func appendString(_ field: Int, _ value: String, to bytes: inout [UInt8]) {
    appendBytes(field, Array(value.utf8), to: &bytes)
  }
}
