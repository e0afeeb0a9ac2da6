// One client connection: the calls waiting for their RESPONSE by call id, HELLO, GOAWAY,
// PING and PONG. Call bookkeeping lives on the channel's event loop.
import GRPCCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NestProto
import NestProtoRuntime

final class ClientConnection: Sendable {
  let channel: any Channel
  let remotePeer: String
  let localPeer: String
  private let handler: NIOLoopBound<ClientConnectionHandler>
  private let nextCallID = NIOLockedValueBox<UInt64>(1)
  /// Keeps this connection's calls within what the server said it runs at once.
  /// One call may go out before the server's HELLO says how many it runs at once; the rest
  /// wait for it, so that a server with a small limit never sees more than it allows.
  let gate = CallGate(limit: 1)
  /// False once GOAWAY arrived or the connection closed: new calls need a new connection.
  private let usable = NIOLockedValueBox(true)

  private init(channel: any Channel, handler: ClientConnectionHandler) {
    self.channel = channel
    self.remotePeer = channel.remoteAddress.map { "\($0)" } ?? "unknown"
    self.localPeer = channel.localAddress.map { "\($0)" } ?? "unknown"
    self.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
  }

  static func dial(
    _ configuration: NestClientTransport.Configuration, group: any EventLoopGroup, logger: Logger
  ) async throws -> ClientConnection {
    let channel = try await ClientBootstrap(group: group)
      .connectTimeout(configuration.connectTimeout)
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(FrameDecoder(maxFrameBytes: configuration.maxFrameBytes)))
          try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
          try channel.pipeline.syncOperations.addHandler(
            ClientConnectionHandler(configuration: configuration, logger: logger))
        }
      }
      .connect(host: configuration.host, port: configuration.port).get()
    return try await channel.eventLoop.submit {
      let handler = try channel.pipeline.syncOperations.handler(type: ClientConnectionHandler.self)
      let connection = ClientConnection(channel: channel, handler: handler)
      handler.connection = connection
      return connection
    }.get()
  }

  var isUsable: Bool { self.usable.withLockedValue { $0 } && self.channel.isActive }

  func markUnusable() { self.usable.withLockedValue { $0 = false } }

  /// A new call id; waits while the server's limit of concurrent calls is reached.
  func open() async throws -> UInt64 {
    try await self.gate.acquire()
    return self.nextCallID.withLockedValue { id in
      defer { id += 1 }
      return id
    }
  }

  /// Registers the call for its RESPONSE and sends its REQUEST, in one hop to the loop.
  func start(_ frame: Nest_Wire_V1_Frame, _ sink: ResponseSink) {
    self.channel.eventLoop.execute {
      let handler = self.handler.value
      if handler.register(frame, sink) { handler.send(frame, flushNow: handler.callsInFlight == 1) }
    }
  }

  /// A frame of a call already started (a streaming call's MESSAGE or HALF_CLOSE), in order
  /// after its REQUEST.
  func send(_ frame: Nest_Wire_V1_Frame) {
    self.channel.eventLoop.execute { self.handler.value.send(frame) }
  }

  func cancel(_ callID: UInt64) {
    self.channel.eventLoop.execute { self.handler.value.cancel(callID) }
  }

  func close() {
    self.markUnusable()
    self.channel.close(promise: nil)
  }
}

final class ClientConnectionHandler: ChannelInboundHandler {
  typealias InboundIn = Nest_Wire_V1_Frame
  typealias OutboundOut = Nest_Wire_V1_Frame

  private let configuration: NestClientTransport.Configuration
  private let logger: Logger
  private var calls: [UInt64: ResponseSink] = [:]
  /// Streaming calls, and those of them whose response has begun (initial metadata given).
  private var streaming: Set<UInt64> = []
  private var begun: Set<UInt64> = []
  private var context: ChannelHandlerContext?
  private var keepalive: RepeatedTask?
  /// Set after GOAWAY: calls at or below it still get their RESPONSE.
  private var lastCallID: UInt64? = nil
  /// The largest frame the server accepts: the protocol's default until its HELLO says.
  private var serverMaxFrameBytes = 4 << 20
  /// Set by `dial` once connected; the server's HELLO may arrive before it is.
  weak var connection: ClientConnection? {
    didSet {
      if let limit = self.announcedLimit { self.connection?.gate.setLimit(limit) }
    }
  }
  /// The concurrency limit of the server's HELLO, kept for a connection set after it arrived.
  private var announcedLimit: Int?

  init(configuration: NestClientTransport.Configuration, logger: Logger) {
    self.configuration = configuration
    self.logger = logger
  }

  func channelActive(context: ChannelHandlerContext) {
    self.context = context
    // HELLO first; requests may follow without waiting for the server's (rule 1).
    let hello = Nest_Wire_V1_Frame.hello(
      peer: self.configuration.peerName, maxFrameBytes: self.configuration.maxFrameBytes)
    context.writeAndFlush(Self.wrapOutboundOut(hello), promise: nil)
    if let interval = self.configuration.keepaliveInterval {
      // Cancelled in channelInactive, so the handler lives exactly as long as it pings.
      let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
      self.keepalive = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
        handler.value.send(.with { $0.kind = .ping })
      }
    }
    context.fireChannelActive()
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
  }

  func channelInactive(context: ChannelHandlerContext) {
    self.keepalive?.cancel()
    self.connection?.markUnusable()
    let calls = self.calls
    for callID in calls.keys { self.removeCall(callID) }
    for continuation in calls.values {
      continuation.finish(throwing: RPCError(code: .unavailable, message: "the connection closed"))
    }
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if let error = error as? FrameError {
      let goAway = Nest_Wire_V1_Frame.goAway(lastCallID: 0, code: error.statusCode, message: error.message)
      let channel = context.channel
      context.writeAndFlush(Self.wrapOutboundOut(goAway)).whenComplete { _ in channel.close(promise: nil) }
    } else {
      context.close(promise: nil)
    }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let frame = Self.unwrapInboundIn(data)
    switch frame.kind {
    case .response:
      let streaming = self.streaming.contains(frame.callID)
      let begun = self.begun.contains(frame.callID)
      guard let continuation = self.removeCall(frame.callID) else { return }
      var trailers = Metadata(wire: frame.metadata)
      trailers.addViolations(frame.status?.violations ?? [])
      let status = (frame.status ?? .init()).grpcStatus
      if status.code == .ok && !begun { continuation.yield(.metadata([:])) }
      if status.code == .ok && !streaming { continuation.yield(.message(frame.payload)) }
      continuation.yield(.status(status, trailers))
      continuation.finish()
      self.closeIfDrained()
    case .goaway:
      self.connection?.markUnusable()
      let last = frame.lastCallID
      self.lastCallID = last
      for (callID, continuation) in self.calls where callID > last {
        self.removeCall(callID)
        continuation.finish(
          throwing: RPCError(
            code: .unavailable, message: "the server is going away; the call was not processed and is safe to retry"))
      }
      self.closeIfDrained()
    case .ping:
      self.send(
        .with {
          $0.kind = .pong
          $0.payload = frame.payload
        })
    case .hello:
      let limit = Int(frame.hello?.maxConcurrentCalls ?? 0)
      self.announcedLimit = limit
      self.connection?.gate.setLimit(limit)
      if let limit = frame.hello?.maxFrameBytes, limit > 0 { self.serverMaxFrameBytes = Int(limit) }
    case .message:
      // A response message of a streaming call; of any other, ignored.
      guard self.streaming.contains(frame.callID), let continuation = self.calls[frame.callID] else { return }
      if self.begun.insert(frame.callID).inserted { continuation.yield(.metadata([:])) }
      continuation.yield(.message(frame.payload))
    case .pong, .request, .cancel, .halfClose, .unspecified, .unrecognized:
      break
    }
  }

  /// False (and the call ended) when the connection cannot take it.
  func register(_ frame: Nest_Wire_V1_Frame, _ continuation: ResponseSink) -> Bool {
    let callID = frame.callID
    let size = Self.upperBoundOfEncodedSize(frame)
    if size > self.serverMaxFrameBytes {
      // Sending it would make the server end the connection for everyone (rule 7).
      self.connection?.gate.release()
      continuation.finish(
        throwing: RPCError(
          code: .resourceExhausted,
          message: "a request of about \(size) bytes exceeds the server's frame limit of \(self.serverMaxFrameBytes)"))
      return false
    }
    if let last = self.lastCallID, callID > last {
      self.connection?.gate.release()
      continuation.finish(throwing: RPCError(code: .unavailable, message: "the server is going away; retry"))
      return false
    }
    guard self.context?.channel.isActive == true else {
      self.connection?.gate.release()
      continuation.finish(throwing: RPCError(code: .unavailable, message: "the connection closed"))
      return false
    }
    self.calls[callID] = continuation
    if frame.streaming { self.streaming.insert(callID) }
    return true
  }

  var callsInFlight: Int { self.calls.count }

  /// At least the encoded size of a REQUEST frame, without encoding it: each field's bytes
  /// plus the widest tag and length prefix protobuf can write.
  static func upperBoundOfEncodedSize(_ frame: Nest_Wire_V1_Frame) -> Int {
    let metadata = frame.metadata.reduce(0) { total, entry in
      let value: Int
      switch entry.value {
      case .text(let text)?: value = text.utf8.count
      case .binary(let bytes)?: value = bytes.count
      case nil: value = 0
      }
      return total + entry.key.utf8.count + value + 3 * 11
    }
    return 4 * 11 + frame.method.utf8.count + metadata + 11 + frame.payload.count
  }

  /// Writes now; flushes now (a lone call) or once per event-loop tick, so calls started
  /// together share a syscall.
  func send(_ frame: Nest_Wire_V1_Frame, flushNow: Bool = true) {
    guard let context = self.context else { return }
    context.write(Self.wrapOutboundOut(frame), promise: nil)
    if flushNow {
      context.flush()
      return
    }
    guard !self.flushScheduled else { return }
    self.flushScheduled = true
    context.eventLoop.assumeIsolated().execute {
      self.flushScheduled = false
      self.context?.flush()
    }
  }

  private var flushScheduled = false

  /// The caller gave up: tell the server (rule 4) and end the call here.
  func cancel(_ callID: UInt64) {
    guard let continuation = self.removeCall(callID) else { return }
    self.send(
      .with {
        $0.callID = callID
        $0.kind = .cancel
      })
    continuation.finish(throwing: RPCError(code: .cancelled, message: "the call was cancelled"))
    self.closeIfDrained()
  }

  /// Ends a call's bookkeeping; its place under the concurrency limit frees up.
  @discardableResult
  private func removeCall(_ callID: UInt64) -> ResponseSink? {
    guard let continuation = self.calls.removeValue(forKey: callID) else { return nil }
    self.streaming.remove(callID)
    self.begun.remove(callID)
    self.connection?.gate.release()
    return continuation
  }

  private func closeIfDrained() {
    if self.lastCallID != nil, self.calls.isEmpty {
      self.context?.close(promise: nil)
    }
  }
}

/// Admits at most `limit` calls at once (0: no limit); the rest wait in order.
final class CallGate: Sendable {
  private struct State {
    var limit: Int
    var inUse = 0
    var nextWaiter = 0
    var waiters: [(id: Int, continuation: CheckedContinuation<Void, any Error>)] = []
  }
  private let state: NIOLockedValueBox<State>

  init(limit: Int) {
    self.state = NIOLockedValueBox(State(limit: limit))
  }

  func acquire() async throws {
    let id = self.state.withLockedValue { state -> Int? in
      if state.limit == 0 || state.inUse < state.limit {
        state.inUse += 1
        return nil
      }
      defer { state.nextWaiter += 1 }
      return state.nextWaiter
    }
    guard let id else { return }
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { continuation in
        let admitted = self.state.withLockedValue { state -> Bool in
          // A release may have come between the check above and here.
          if state.limit == 0 || state.inUse < state.limit {
            state.inUse += 1
            return true
          }
          state.waiters.append((id, continuation))
          return false
        }
        if admitted { continuation.resume() }
      }
    } onCancel: {
      let waiter = self.state.withLockedValue { state in
        state.waiters.firstIndex { $0.id == id }.map { state.waiters.remove(at: $0).continuation }
      }
      waiter?.resume(throwing: CancellationError())
    }
  }

  func release() {
    let next = self.state.withLockedValue { state in
      state.inUse -= 1
      return Self.admit(&state)
    }
    next.forEach { $0.resume() }
  }

  func setLimit(_ limit: Int) {
    let next = self.state.withLockedValue { state in
      state.limit = limit
      return Self.admit(&state)
    }
    next.forEach { $0.resume() }
  }

  private static func admit(_ state: inout State) -> [CheckedContinuation<Void, any Error>] {
    var admitted: [CheckedContinuation<Void, any Error>] = []
    while !state.waiters.isEmpty, state.limit == 0 || state.inUse < state.limit {
      state.inUse += 1
      admitted.append(state.waiters.removeFirst().continuation)
    }
    return admitted
  }
}
