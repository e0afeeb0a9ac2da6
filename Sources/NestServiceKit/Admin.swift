// The admin port of a service: plain HTTP/1.1 for what operators' tools read. `/metrics`
// (the Prometheus text format of every metric the service records through swift-metrics),
// `/healthz` (the process answers), `/readyz` (it serves: 503 once it starts draining) and,
// for an operator's token only, `/backup` (a consistent copy of the database, taken while
// the service serves: `nestctl backup`).
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
public import ServiceLifecycle

public struct AdminServer: Service {
  public enum Address: Sendable {
    case host(String, port: Int)
    /// An inherited, already listening socket (`--admin-listen-fd`).
    case socket(CInt)
  }

  let address: Address
  let state: ServingState
  let registry: PrometheusCollectorRegistry
  let announce: Bool
  let backup: Backup?

  /// What `GET /backup` answers, given the request's `authorization` header.
  public typealias Backup = @Sendable (_ authorization: String?) async -> BackupAnswer

  public enum BackupAnswer: Sendable {
    /// The copy's bytes (an SQLite database file).
    case database([UInt8])
    case unauthenticated(String)
    case permissionDenied(String)
    case failed(String)
  }

  public init(
    _ address: Address, state: ServingState, registry: PrometheusCollectorRegistry, announce: Bool,
    backup: Backup? = nil
  ) {
    self.address = address
    self.state = state
    self.registry = registry
    self.announce = announce
    self.backup = backup
  }

  public func run() async throws {
    let state = self.state
    let registry = self.registry
    let backup = self.backup
    let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.backlog, value: 64)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { channel in
        channel.pipeline.configureHTTPServerPipeline().flatMap {
          channel.pipeline.addHandler(AdminHandler(state: state, registry: registry, backup: backup))
        }
      }
    let channel: any Channel
    switch self.address {
    case .host(let host, let port): channel = try await bootstrap.bind(host: host, port: port).get()
    case .socket(let descriptor): channel = try await bootstrap.withBoundSocket(descriptor).get()
    }
    if self.announce, let address = channel.localAddress {
      print("admin listening on \(address.ipAddress ?? "?"):\(address.port ?? 0)")
      fflush(nil)
    }
    // Until the service group stops: then the port closes.
    try? await gracefulShutdown()
    try await channel.close()
  }
}

final class AdminHandler: ChannelInboundHandler, Sendable {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  let state: ServingState
  let registry: PrometheusCollectorRegistry
  let backup: AdminServer.Backup?

  init(state: ServingState, registry: PrometheusCollectorRegistry, backup: AdminServer.Backup?) {
    self.state = state
    self.registry = registry
    self.backup = backup
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard case .head(let head) = self.unwrapInboundIn(data) else { return }
    let (status, contentType, body): (HTTPResponseStatus, String, [UInt8])
    let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
    if head.method == .GET, path == "/backup", let backup = self.backup {
      // Taken off the event loop; answered on it.
      let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
      let authorization = head.headers.first(name: "authorization")
      let answer = context.eventLoop.makePromise(of: AdminServer.BackupAnswer.self)
      answer.completeWithTask { await backup(authorization) }
      answer.futureResult.assumeIsolated().whenSuccess { answer in
        let (status, contentType, body): (HTTPResponseStatus, String, [UInt8]) =
          switch answer {
          case .database(let bytes): (.ok, "application/vnd.sqlite3", bytes)
          case .unauthenticated(let why): (.unauthorized, "text/plain", Array("\(why)\n".utf8))
          case .permissionDenied(let why): (.forbidden, "text/plain", Array("\(why)\n".utf8))
          case .failed(let why): (.internalServerError, "text/plain", Array("\(why)\n".utf8))
          }
        Self.respond(bound.value, version: head.version, status: status, contentType: contentType, body: body)
      }
      return
    }
    switch (head.method, path) {
    case (.GET, "/metrics"):
      (status, contentType, body) = (.ok, "text/plain; version=0.0.4", self.registry.emitToBuffer())
    case (.GET, "/healthz"):
      (status, contentType, body) = (.ok, "text/plain", Array("ok\n".utf8))
    case (.GET, "/readyz"):
      (status, contentType, body) =
        self.state.isServing
        ? (.ok, "text/plain", Array("ready\n".utf8)) : (.serviceUnavailable, "text/plain", Array("draining\n".utf8))
    case (.GET, _):
      (status, contentType, body) = (
        .notFound, "text/plain", Array("try /metrics, /healthz, /readyz or /backup\n".utf8)
      )
    default:
      (status, contentType, body) = (.methodNotAllowed, "text/plain", Array("GET only\n".utf8))
    }
    Self.respond(context, version: head.version, status: status, contentType: contentType, body: body)
  }

  static func respond(
    _ context: ChannelHandlerContext, version: HTTPVersion, status: HTTPResponseStatus, contentType: String,
    body: [UInt8]
  ) {
    var headers = HTTPHeaders()
    headers.add(name: "content-type", value: contentType)
    headers.add(name: "content-length", value: "\(body.count)")
    headers.add(name: "connection", value: "close")
    context.write(
      NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: status, headers: headers))),
      promise: nil)
    context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
    // "connection: close": the channel closes once the response is written.
    let closed = context.eventLoop.makePromise(of: Void.self)
    context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil)), promise: closed)
    closed.futureResult.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
  }
}
