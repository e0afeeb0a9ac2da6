// The server side of wire protocol v1 as a GRPCCore ServerTransport. Each REQUEST frame
// becomes a one-message RPC stream handed to GRPCCore (which routes it, enforces the
// deadline, runs interceptors and handlers); the stream's response parts go back as one
// RESPONSE frame.
public import GRPCCore
import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix
import NestProto
import NestProtoRuntime

public final class NestServerTransport: ServerTransport, Sendable {
  public typealias Bytes = [UInt8]

  public struct Configuration: Sendable {
    public var host: String
    /// 0 picks a free port; `listeningAddress` tells which.
    public var port: Int
    /// Sent in HELLO, e.g. "catalog-service/0.1.0".
    public var peerName: String
    /// Calls one connection may run at once; more are refused RESOURCE_EXHAUSTED.
    public var maxConcurrentCalls: Int
    /// The largest frame body accepted; a larger one ends the connection.
    public var maxFrameBytes: Int
    /// How long a new connection has to send HELLO.
    public var helloTimeout: TimeAmount
    /// A connection with no call and no frame for this long is closed.
    public var idleTimeout: TimeAmount
    /// How long in-flight calls may run after graceful shutdown begins.
    public var shutdownGracePeriod: TimeAmount
    /// Connections open at once; one more is sent GOAWAY RESOURCE_EXHAUSTED and closed.
    public var maxConnections: Int
    /// A socket already bound and listening (its descriptor, inherited from whoever started
    /// the process): served instead of binding `host:port`, so that the port was known, and
    /// could not be taken, before the process started.
    public var listeningSocket: CInt?

    public init(
      host: String = "127.0.0.1",
      port: Int,
      peerName: String,
      maxConcurrentCalls: Int = 100,
      maxFrameBytes: Int = 4 << 20,
      helloTimeout: TimeAmount = .seconds(10),
      idleTimeout: TimeAmount = .minutes(5),
      shutdownGracePeriod: TimeAmount = .seconds(10),
      maxConnections: Int = 1024,
      listeningSocket: CInt? = nil
    ) {
      self.listeningSocket = listeningSocket
      self.host = host
      self.port = port
      self.peerName = peerName
      self.maxConcurrentCalls = maxConcurrentCalls
      self.maxFrameBytes = maxFrameBytes
      self.helloTimeout = helloTimeout
      self.idleTimeout = idleTimeout
      self.shutdownGracePeriod = shutdownGracePeriod
      self.maxConnections = maxConnections
    }
  }

  public let configuration: Configuration
  private let group: any EventLoopGroup
  private let logger: Logger
  private let state = NIOLockedValueBox(State())
  private let incoming: AsyncStream<IncomingCall>
  private let incomingContinuation: AsyncStream<IncomingCall>.Continuation
  private let boundAddress: EventLoopPromise<SocketAddress>

  private struct State {
    var listener: (any Channel)? = nil
    var connections: [ObjectIdentifier: ConnectionRef] = [:]
    var accepted = 0
    var shuttingDown = false
  }

  public init(
    _ configuration: Configuration,
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    logger: Logger = Logger(label: "nest.transport.server")
  ) {
    self.configuration = configuration
    self.group = group
    self.logger = logger
    (self.incoming, self.incomingContinuation) = AsyncStream.makeStream()
    self.boundAddress = group.next().makePromise()
  }

  /// The address the server listens on, once `listen` has bound it.
  public func listeningAddress() async throws -> SocketAddress {
    try await self.boundAddress.futureResult.get()
  }

  public func listen(
    streamHandler: @escaping @Sendable (RPCStream<Inbound, Outbound>, ServerContext) async -> Void
  ) async throws {
    let configuration = self.configuration
    let bootstrap = ServerBootstrap(group: self.group)
      .serverChannelOption(.backlog, value: 256)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          let handler = ServerConnectionHandler(
            configuration: configuration, transport: self, logger: self.logger)
          try channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(FrameDecoder(maxFrameBytes: configuration.maxFrameBytes)))
          try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
          try channel.pipeline.syncOperations.addHandler(handler)
        }
      }
    let listener: any Channel
    do {
      if let socket = configuration.listeningSocket {
        listener = try await bootstrap.withBoundSocket(socket).get()
      } else {
        listener = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
      }
    } catch {
      self.boundAddress.fail(error)
      throw error
    }
    self.state.withLockedValue { $0.listener = listener }
    self.boundAddress.succeed(listener.localAddress!)
    if self.state.withLockedValue({ $0.shuttingDown }) { self.beginGracefulShutdown() }

    await withDiscardingTaskGroup { group in
      for await call in self.incoming {
        group.addTask {
          await withServerContextRPCCancellationHandle { handle in
            call.control.attach(handle)
            let context = ServerContext(
              descriptor: call.stream.descriptor, remotePeer: call.remotePeer,
              localPeer: call.localPeer, cancellation: handle)
            await streamHandler(call.stream, context)
          }
        }
      }
    }
    try? await listener.closeFuture.get()
  }

  /// Stops accepting connections, sends GOAWAY on each open one, lets in-flight calls
  /// finish for the grace period, then closes what is left.
  public func beginGracefulShutdown() {
    let (listener, connections) = self.state.withLockedValue { state in
      state.shuttingDown = true
      return (state.listener, Array(state.connections.values))
    }
    listener?.close(promise: nil)
    for connection in connections { connection.drain() }
    self.finishIfIdle()
  }

  /// How many connections are open now.
  public var openConnections: Int {
    self.state.withLockedValue { $0.connections.count }
  }

  /// How many connections were accepted since the server started.
  public var acceptedConnections: Int {
    self.state.withLockedValue { $0.accepted }
  }

  // MARK: For connections

  func accept(_ call: IncomingCall) {
    self.incomingContinuation.yield(call)
  }

  enum Admission { case accepted, shuttingDown, full }

  /// Registers a connection, unless the server is shutting down or at its connection limit.
  func register(_ connection: ConnectionRef) -> Admission {
    self.state.withLockedValue { state in
      guard !state.shuttingDown else { return .shuttingDown }
      guard state.connections.count < self.configuration.maxConnections else { return .full }
      state.connections[connection.id] = connection
      state.accepted += 1
      return .accepted
    }
  }

  func unregister(_ connection: ConnectionRef) {
    self.state.withLockedValue { _ = $0.connections.removeValue(forKey: connection.id) }
    self.finishIfIdle()
  }

  /// Once shutting down with no connection left, no call can arrive: end the call stream.
  private func finishIfIdle() {
    let done = self.state.withLockedValue { $0.shuttingDown && $0.connections.isEmpty }
    if done { self.incomingContinuation.finish() }
  }
}

/// A REQUEST on its way to GRPCCore.
struct IncomingCall: Sendable {
  var stream: RPCStream<NestServerTransport.Inbound, NestServerTransport.Outbound>
  var control: CallControl
  var remotePeer: String
  var localPeer: String
}

/// Lets the connection cancel a call whose handler task holds the cancellation handle.
final class CallControl: Sendable {
  private let state = NIOLockedValueBox<(handle: ServerContext.RPCCancellationHandle?, cancelled: Bool)>((nil, false))

  func attach(_ handle: ServerContext.RPCCancellationHandle) {
    let cancelled = self.state.withLockedValue { state in
      state.handle = handle
      return state.cancelled
    }
    if cancelled { handle.cancel() }
  }

  func cancel() {
    let handle = self.state.withLockedValue { state in
      state.cancelled = true
      return state.handle
    }
    handle?.cancel()
  }
}

/// A connection as the transport sees it from other threads.
struct ConnectionRef: Sendable {
  let id: ObjectIdentifier
  let handler: NIOLoopBound<ServerConnectionHandler>

  func drain() {
    self.handler.eventLoop.execute { self.handler.value.drain(reason: "server shutting down") }
  }

  func respond(_ callID: UInt64, _ frame: Nest_Wire_V1_Frame) {
    self.handler.eventLoop.execute { self.handler.value.respond(callID, frame) }
  }

  /// A response message of a streaming call, sent at once.
  func message(_ callID: UInt64, _ payload: [UInt8]) {
    self.handler.eventLoop.execute { self.handler.value.message(callID, payload) }
  }
}
