// One server connection's protocol state, confined to its event loop: HELLO first, then
// any number of calls at once up to the limit (a streaming call's messages in MESSAGE
// frames), CANCEL and PING, and GOAWAY when draining or when the peer breaks the protocol.
import GRPCCore
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NestProto
import NestProtoRuntime

final class ServerConnectionHandler: ChannelInboundHandler {
  typealias InboundIn = Nest_Wire_V1_Frame
  typealias OutboundOut = Nest_Wire_V1_Frame

  private enum Phase {
    case awaitingHello
    case ready
    /// GOAWAY sent: calls above `lastCallID` are ignored; close once none is in flight.
    case draining(lastCallID: UInt64)
    case closed
  }

  private let configuration: NestServerTransport.Configuration
  private let transport: NestServerTransport
  private var logger: Logger
  private var phase = Phase.awaitingHello
  private var inFlight: [UInt64: CallControl] = [:]
  /// Streaming calls whose requests are still open (until HALF_CLOSE).
  private var requestStreams: [UInt64: AsyncThrowingStream<RPCRequestPart<[UInt8]>, any Error>.Continuation] = [:]
  private var highestCallID: UInt64 = 0
  private var context: ChannelHandlerContext?
  private var reference: ConnectionRef?
  private var helloTimer: Scheduled<Void>?
  private var idleTimer: Scheduled<Void>?
  /// When the last frame arrived: the idle timer, set once, looks at it when it fires
  /// rather than being set again for every frame.
  private var lastFrameAt = NIODeadline.now()
  private var graceTimer: Scheduled<Void>?
  private var remotePeer = "unknown"
  private var localPeer = "unknown"

  init(configuration: NestServerTransport.Configuration, transport: NestServerTransport, logger: Logger) {
    self.configuration = configuration
    self.transport = transport
    self.logger = logger
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    self.remotePeer = context.channel.remoteAddress.map { "\($0)" } ?? "unknown"
    self.localPeer = context.channel.localAddress.map { "\($0)" } ?? "unknown"
    self.logger[metadataKey: "peer"] = "\(self.remotePeer)"
    let reference = ConnectionRef(
      id: ObjectIdentifier(self), handler: NIOLoopBound(self, eventLoop: context.eventLoop))
    self.reference = reference
    switch self.transport.register(reference) {
    case .accepted:
      break
    case .shuttingDown:
      context.close(promise: nil)
      return
    case .full:
      // Refused once active, when the GOAWAY can be written.
      self.reference = nil
      self.refused = true
      return
    }
    self.helloTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.configuration.helloTimeout) {
      [weak self] in
      self?.goAway(
        code: 4, message: "no HELLO within \(self?.configuration.helloTimeout.nanoseconds ?? 0 / 1_000_000) ms")
    }
    self.startIdleTimer()
  }

  /// Set when the transport is at its connection limit: GOAWAY as soon as the channel is active.
  private var refused = false

  /// Open connections of this listener (refused ones are not counted).
  static let openConnections = Meter(label: "nest_connections_open", dimensions: [("transport", "nest")])

  func channelActive(context: ChannelHandlerContext) {
    if !self.refused { Self.openConnections.increment() }
    if self.refused {
      self.helloTimer?.cancel()
      self.goAway(code: 8, message: "too many connections (limit \(self.configuration.maxConnections))")
    }
    context.fireChannelActive()
  }

  func channelInactive(context: ChannelHandlerContext) {
    if !self.refused { Self.openConnections.decrement() }
    self.phase = .closed
    self.helloTimer?.cancel()
    self.idleTimer?.cancel()
    self.graceTimer?.cancel()
    // Nobody is left to answer: stop the handlers.
    for control in self.inFlight.values { control.cancel() }
    self.inFlight.removeAll()
    for stream in self.requestStreams.values { stream.finish() }
    self.requestStreams.removeAll()
    if let reference = self.reference { self.transport.unregister(reference) }
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if let error = error as? FrameError {
      self.goAway(code: error.statusCode, message: error.message)
    } else {
      context.close(promise: nil)
    }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let frame = Self.unwrapInboundIn(data)
    self.lastFrameAt = .now()
    switch self.phase {
    case .closed:
      return
    case .awaitingHello:
      self.helloTimer?.cancel()
      guard frame.kind == .hello, frame.callID == 0 else {
        return self.goAway(code: 3, message: "the first frame must be HELLO")
      }
      guard frame.hello?.version == 1 else {
        return self.goAway(
          code: 12, message: "unsupported protocol version \(frame.hello?.version ?? 0); this server speaks 1")
      }
      self.phase = .ready
      let hello = Nest_Wire_V1_Frame.hello(
        peer: self.configuration.peerName, maxFrameBytes: self.configuration.maxFrameBytes,
        maxConcurrentCalls: self.configuration.maxConcurrentCalls)
      context.writeAndFlush(Self.wrapOutboundOut(hello), promise: nil)
    case .ready, .draining:
      self.handle(frame, context: context)
    }
  }

  private func handle(_ frame: Nest_Wire_V1_Frame, context: ChannelHandlerContext) {
    switch frame.kind {
    case .request:
      self.request(frame, context: context)
    case .cancel:
      // No RESPONSE is owed after CANCEL (rule 4).
      self.inFlight.removeValue(forKey: frame.callID)?.cancel()
      self.requestStreams.removeValue(forKey: frame.callID)?.finish()
      self.closeIfDrained()
    case .message:
      // A request message of a streaming call; of any other call, ignored (rule 8).
      self.requestStreams[frame.callID]?.yield(.message(frame.payload))
    case .halfClose:
      self.requestStreams.removeValue(forKey: frame.callID)?.finish()
    case .ping:
      let pong = Nest_Wire_V1_Frame.with {
        $0.kind = .pong
        $0.payload = frame.payload
      }
      context.writeAndFlush(Self.wrapOutboundOut(pong), promise: nil)
    case .hello:
      self.goAway(code: 3, message: "HELLO sent twice")
    case .goaway, .pong, .response, .unspecified, .unrecognized:
      // A client's GOAWAY changes nothing here; unknown kinds are ignored (rule 7).
      break
    }
  }

  private func request(_ frame: Nest_Wire_V1_Frame, context: ChannelHandlerContext) {
    let callID = frame.callID
    guard callID > 0, self.inFlight[callID] == nil else {
      return self.goAway(code: 3, message: "call id \(callID) is zero or already in use")
    }
    if case .draining(let lastCallID) = self.phase, callID > lastCallID {
      return  // the client fails it UNAVAILABLE itself (rule 6)
    }
    self.highestCallID = max(self.highestCallID, callID)
    guard self.inFlight.count < self.configuration.maxConcurrentCalls else {
      return self.send(
        Self.response(
          callID,
          status: .init(
            code: .resourceExhausted,
            message: "more than \(self.configuration.maxConcurrentCalls) concurrent calls on one connection")))
    }
    guard let descriptor = MethodDescriptor(wirePath: frame.method) else {
      return self.send(
        Self.response(callID, status: .init(code: .unimplemented, message: "malformed method \"\(frame.method)\"")))
    }
    var metadata = Metadata(wire: frame.metadata)
    if frame.timeoutMs > 0 {
      metadata.replaceOrAddString("\(frame.timeoutMs)m", forKey: Metadata.timeoutKey)
    }
    let control = CallControl()
    self.inFlight[callID] = control
    let inbound: RPCAsyncSequence<RPCRequestPart<[UInt8]>, any Error>
    if frame.streaming {
      // More request messages come in MESSAGE frames, until HALF_CLOSE.
      let (stream, continuation) = AsyncThrowingStream.makeStream(of: RPCRequestPart<[UInt8]>.self)
      continuation.yield(.metadata(metadata))
      if !frame.payload.isEmpty { continuation.yield(.message(frame.payload)) }
      self.requestStreams[callID] = continuation
      inbound = RPCAsyncSequence(wrapping: stream)
    } else {
      // A unary request is whole in its frame: no stream to feed.
      inbound = RPCAsyncSequence(wrapping: UnaryRequestParts(metadata: metadata, message: frame.payload))
    }
    let writer = ResponseWriter(callID: callID, connection: self.reference!, streaming: frame.streaming)
    self.transport.accept(
      IncomingCall(
        stream: RPCStream(descriptor: descriptor, inbound: inbound, outbound: RPCWriter.Closable(wrapping: writer)),
        control: control, remotePeer: self.remotePeer, localPeer: self.localPeer))
  }

  /// From a streaming call's writer: one response message, sent at once.
  func message(_ callID: UInt64, _ payload: [UInt8]) {
    guard self.inFlight[callID] != nil else { return }  // cancelled or closed
    self.send(
      .with {
        $0.callID = callID
        $0.kind = .message
        $0.payload = payload
      })
  }

  /// From a call's writer: its one RESPONSE.
  func respond(_ callID: UInt64, _ frame: Nest_Wire_V1_Frame) {
    self.requestStreams.removeValue(forKey: callID)?.finish()
    guard self.inFlight.removeValue(forKey: callID) != nil else { return }  // cancelled or closed
    // The last call in flight goes out at once; with others still running, responses
    // finishing together share one flush.
    self.send(frame, flushNow: self.inFlight.isEmpty)
    self.closeIfDrained()
  }

  /// Stops taking new calls: GOAWAY, let the in-flight ones finish (for the grace period).
  func drain(reason: String) {
    guard case .ready = self.phase, let context = self.context else {
      if case .awaitingHello = self.phase { self.context?.close(promise: nil) }
      return
    }
    self.phase = .draining(lastCallID: self.highestCallID)
    self.send(.goAway(lastCallID: self.highestCallID, code: 0, message: reason))
    self.graceTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.configuration.shutdownGracePeriod) {
      [weak self] in
      self?.context?.close(promise: nil)
    }
    self.closeIfDrained()
  }

  private func closeIfDrained() {
    if case .draining = self.phase, self.inFlight.isEmpty {
      self.phase = .closed
      self.context?.close(promise: nil)
    }
  }

  /// Ends the connection for a protocol violation or a timeout.
  private func goAway(code: Int32, message: String) {
    guard let context = self.context else { return }
    if case .closed = self.phase { return }
    self.logger.debug("GOAWAY", metadata: ["code": "\(code)", "reason": "\(message)"])
    self.phase = .closed
    let frame = Nest_Wire_V1_Frame.goAway(lastCallID: self.highestCallID, code: code, message: message)
    let channel = context.channel
    context.writeAndFlush(Self.wrapOutboundOut(frame)).whenComplete { _ in channel.close(promise: nil) }
  }

  /// Writes now; flushes now or once per event-loop tick, so that responses finishing
  /// together share one syscall instead of one each.
  private func send(_ frame: Nest_Wire_V1_Frame, flushNow: Bool = true) {
    guard let context = self.context else { return }
    context.write(Self.wrapOutboundOut(frame), promise: nil)
    if flushNow {
      context.flush()
    } else {
      self.scheduleFlush(context)
    }
  }

  private var flushScheduled = false

  private func scheduleFlush(_ context: ChannelHandlerContext) {
    guard !self.flushScheduled else { return }
    self.flushScheduled = true
    context.eventLoop.assumeIsolated().execute {
      self.flushScheduled = false
      self.context?.flush()
    }
  }

  /// Closes the connection once it has had no call and no frame for the idle timeout.
  private func startIdleTimer() {
    self.idleTimer?.cancel()
    self.lastFrameAt = .now()
    self.scheduleIdleCheck(at: self.lastFrameAt + self.configuration.idleTimeout)
  }

  private func scheduleIdleCheck(at deadline: NIODeadline) {
    guard let context = self.context else { return }
    self.idleTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [weak self] in
      guard let self else { return }
      let idleUntil = self.lastFrameAt + self.configuration.idleTimeout
      if !self.inFlight.isEmpty {
        self.scheduleIdleCheck(at: .now() + self.configuration.idleTimeout)
      } else if idleUntil > .now() {
        self.scheduleIdleCheck(at: idleUntil)
      } else {
        self.goAway(code: 0, message: "idle")
      }
    }
  }

  static func response(_ callID: UInt64, status: Nest_Wire_V1_Status, payload: [UInt8] = [], trailers: Metadata = [:])
    -> Nest_Wire_V1_Frame
  {
    .with {
      $0.callID = callID
      $0.kind = .response
      $0.status = status
      $0.payload = payload
      $0.metadata = trailers.wireEntries
    }
  }
}

/// Collects a call's response parts from GRPCCore and sends them as one RESPONSE frame
/// when the status arrives; a streaming call's messages go out as MESSAGE frames at once.
struct ResponseWriter: ClosableRPCWriterProtocol {
  typealias Element = RPCResponsePart<[UInt8]>

  private let callID: UInt64
  private let connection: ConnectionRef
  private let streaming: Bool
  private let parts = NIOLockedValueBox(ResponseParts())

  init(callID: UInt64, connection: ConnectionRef, streaming: Bool = false) {
    self.callID = callID
    self.connection = connection
    self.streaming = streaming
  }

  func write(_ element: Element) async throws {
    switch element {
    case .metadata(let metadata):
      self.parts.withLockedValue { $0.initialMetadata.add(contentsOf: metadata) }
    case .message(let message) where self.streaming:
      self.connection.message(self.callID, message)
    case .message(let message):
      self.parts.withLockedValue { $0.payload = message }
    case .status(let status, let trailers):
      let (payload, initial) = self.parts.withLockedValue { ($0.payload, $0.initialMetadata) }
      var all = initial
      all.add(contentsOf: trailers)
      var wireStatus = Nest_Wire_V1_Status(status)
      wireStatus.violations = all.removeViolations()
      self.connection.respond(
        self.callID,
        ServerConnectionHandler.response(
          self.callID, status: wireStatus, payload: status.code == .ok ? payload : [], trailers: all))
    }
  }

  func write(contentsOf elements: some Sequence<Element>) async throws {
    for element in elements { try await self.write(element) }
  }

  func finish() async {}

  func finish(throwing error: any Error) async {
    let status =
      (error as? RPCError).map { Nest_Wire_V1_Status(code: $0.code, message: $0.message) }
      ?? .init(code: .internalError, message: "the handler failed")
    self.connection.respond(self.callID, ServerConnectionHandler.response(self.callID, status: status))
  }
}

/// A response being put together across the writer's calls.
struct ResponseParts {
  var initialMetadata: Metadata = [:]
  var payload: [UInt8] = []
}

/// A unary call's request parts, both known when its REQUEST frame arrives: its metadata,
/// then its one message.
struct UnaryRequestParts: AsyncSequence, Sendable {
  typealias Element = RPCRequestPart<[UInt8]>
  typealias Failure = any Error

  let metadata: Metadata
  let message: [UInt8]

  func makeAsyncIterator() -> Iterator { Iterator(parts: self) }

  struct Iterator: AsyncIteratorProtocol {
    let parts: UnaryRequestParts
    var given = 0

    mutating func next() async throws -> RPCRequestPart<[UInt8]>? {
      self.given += 1
      switch self.given {
      case 1: return .metadata(self.parts.metadata)
      case 2: return .message(self.parts.message)
      default: return nil
      }
    }
  }
}
