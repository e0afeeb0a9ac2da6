// The client side of wire protocol v1 as a GRPCCore ClientTransport: one TCP connection,
// opened on the first call, that carries many calls at once. A call's request parts go out
// as one REQUEST frame (its deadline as timeout_ms); its RESPONSE comes back as response
// parts. Task cancellation sends CANCEL. After GOAWAY or a lost connection the next call
// dials again, no sooner than a capped exponential backoff allows.
public import GRPCCore
import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOPosix
import NestProto
import NestProtoRuntime

public final class NestClientTransport: ClientTransport, Sendable {
  public typealias Bytes = [UInt8]

  public struct Configuration: Sendable {
    public var host: String
    public var port: Int
    /// Sent in HELLO, e.g. "nestctl/0.1.0".
    public var peerName: String
    public var maxFrameBytes: Int
    public var connectTimeout: TimeAmount
    /// Backoff between failed dials: doubles from `initialBackoff` up to `maxBackoff`.
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    /// Sends PING this often on an idle connection; nil for never.
    public var keepaliveInterval: TimeAmount?
    /// Timeouts and retry policies per method (GRPCCore applies them; CallOptions win).
    public var serviceConfig: ServiceConfig
    /// The methods (wire paths) whose messages stream in MESSAGE frames; every other call
    /// is one request and one response. By default the streaming methods of proto/.
    public var streamingMethods: Set<String>

    public init(
      host: String = "127.0.0.1",
      port: Int,
      peerName: String,
      maxFrameBytes: Int = 4 << 20,
      connectTimeout: TimeAmount = .seconds(5),
      initialBackoff: Duration = .milliseconds(50),
      maxBackoff: Duration = .seconds(5),
      keepaliveInterval: TimeAmount? = nil,
      serviceConfig: ServiceConfig = ServiceConfig(),
      streamingMethods: Set<String> = NestProtoMessages.streamingMethods
    ) {
      self.serviceConfig = serviceConfig
      self.streamingMethods = streamingMethods
      self.host = host
      self.port = port
      self.peerName = peerName
      self.maxFrameBytes = maxFrameBytes
      self.connectTimeout = connectTimeout
      self.initialBackoff = initialBackoff
      self.maxBackoff = maxBackoff
      self.keepaliveInterval = keepaliveInterval
    }
  }

  public let configuration: Configuration
  public let retryThrottle: RetryThrottle?
  /// `serviceConfig`'s method configs by name.
  private let methodConfigs: [MethodConfig.Name: MethodConfig]
  private let group: any EventLoopGroup
  private let logger: Logger
  private let state = NIOLockedValueBox(State())
  private let shutdown: AsyncStream<Void>
  private let shutdownContinuation: AsyncStream<Void>.Continuation

  private struct State {
    var connection: ClientConnection? = nil
    /// A dial in progress that later calls wait for.
    var dialing: EventLoopFuture<ClientConnection>? = nil
    var failures = 0
    var notBefore = ContinuousClock.now
    var closed = false
    /// Whether `connect()` runs. GRPCCore may hand over calls before it does; they wait, so
    /// that no call finishes (and the client shuts down) before the client has started.
    var started = false
    var startWaiters: [(id: Int, continuation: CheckedContinuation<Void, any Error>)] = []
    var nextWaiter = 0
    /// beginGracefulShutdown was called: calls waiting for the start give up.
    var stopping = false
  }

  public init(
    _ configuration: Configuration,
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    logger: Logger = Logger(label: "nest.transport.client")
  ) {
    self.configuration = configuration
    self.group = group
    self.logger = logger
    self.retryThrottle = configuration.serviceConfig.retryThrottling.map(RetryThrottle.init(policy:))
    var methodConfigs: [MethodConfig.Name: MethodConfig] = [:]
    for config in configuration.serviceConfig.methodConfig {
      for name in config.names { methodConfigs[name] = config }
    }
    self.methodConfigs = methodConfigs
    (self.shutdown, self.shutdownContinuation) = AsyncStream.makeStream()
  }

  /// Runs until `beginGracefulShutdown`; connections are opened lazily by calls.
  public func connect() async throws {
    let waiting = self.state.withLockedValue { state in
      state.started = true
      defer { state.startWaiters = [] }
      return state.startWaiters
    }
    for waiter in waiting { waiter.continuation.resume() }
    for await _ in self.shutdown {}
    let connection = self.state.withLockedValue { state -> ClientConnection? in
      state.closed = true
      defer { state.connection = nil }
      return state.connection
    }
    connection?.close()
  }

  public func beginGracefulShutdown() {
    self.shutdownContinuation.finish()
    // Calls still waiting for a start that will not come.
    let waiting = self.state.withLockedValue { state in
      state.stopping = true
      defer { state.startWaiters = [] }
      return state.startWaiters
    }
    for waiter in waiting {
      waiter.continuation.resume(
        throwing: RPCError(code: .unavailable, message: "the client shut down before it started"))
    }
  }

  /// Returns once `connect()` runs; throws if the transport shut down first or the task is cancelled.
  private func waitUntilStarted() async throws {
    enum Wait { case ready, closed, wait(Int) }
    let wait = self.state.withLockedValue { state -> Wait in
      if state.started { return .ready }
      if state.stopping || state.closed { return .closed }
      defer { state.nextWaiter += 1 }
      return .wait(state.nextWaiter)
    }
    switch wait {
    case .ready: return
    case .closed: throw RPCError(code: .unavailable, message: "the client shut down before it started")
    case .wait(let id):
      try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
          let resume = self.state.withLockedValue { state -> Result<Void, any Error>? in
            if state.started { return .success(()) }
            if state.stopping || state.closed {
              return .failure(RPCError(code: .unavailable, message: "the client shut down before it started"))
            }
            state.startWaiters.append((id, continuation))
            return nil
          }
          if let resume { continuation.resume(with: resume) }
        }
      } onCancel: {
        let waiter = self.state.withLockedValue { state in
          state.startWaiters.firstIndex { $0.id == id }.map { state.startWaiters.remove(at: $0).continuation }
        }
        waiter?.resume(throwing: CancellationError())
      }
    }
  }

  /// The method's own config, else its service's, else the default one (service "").
  public func config(forMethod descriptor: MethodDescriptor) -> MethodConfig? {
    let service = descriptor.service.fullyQualifiedService
    return self.methodConfigs[.init(service: service, method: descriptor.method)]
      ?? self.methodConfigs[.init(service: service)] ?? self.methodConfigs[.init(service: "")]
  }

  public func withStream<T: Sendable>(
    descriptor: MethodDescriptor,
    options: CallOptions,
    _ closure: (RPCStream<Inbound, Outbound>, ClientContext) async throws -> T
  ) async throws -> T {
    try await self.waitUntilStarted()
    let connection: ClientConnection
    let callID: UInt64
    do {
      connection = try await self.connection(waitForReady: options.waitForReady ?? false)
      callID = try await connection.open()
    } catch let error as RPCError {
      // No connection: the call is answered at once with the status, as a stream that was
      // rejected, so that GRPCCore's executors (retries included) see an ordinary failed RPC.
      return try await closure(
        Self.rejected(descriptor, error),
        ClientContext(
          descriptor: descriptor, remotePeer: "\(self.configuration.host):\(self.configuration.port)", localPeer: ""))
    }
    let path = descriptor.wirePath
    let streaming = self.configuration.streamingMethods.contains(path)
    let sink: ResponseSink
    let source: CallResponseParts.Source
    if streaming {
      let (inbound, continuation) = AsyncThrowingStream.makeStream(of: RPCResponsePart<[UInt8]>.self)
      (sink, source) = (.stream(continuation), .stream(inbound))
    } else {
      let response = UnaryResponse()
      (sink, source) = (.unary(response), .unary(response))
    }
    let call = NIOLockedValueBox(CallState())
    let writer = RequestWriter(
      callID: callID, path: path, streaming: streaming, connection: connection, sink: sink, call: call)
    let stream = RPCStream(
      descriptor: descriptor, inbound: RPCAsyncSequence(wrapping: CallResponseParts(source: source, call: call)),
      outbound: RPCWriter.Closable(wrapping: writer))
    let context = ClientContext(
      descriptor: descriptor, remotePeer: connection.remotePeer, localPeer: connection.localPeer)
    return try await withTaskCancellationHandler {
      // A call whose status came was forgotten by the connection before it gave it. Any
      // other (its caller cancelled or out of time, its reader gone) is cancelled here: the
      // connection forgets it and frees its place, and the server is told (rule 4).
      defer { if !call.withLockedValue({ $0.statusReceived }) { connection.cancel(callID) } }
      return try await closure(stream, context)
    } onCancel: {
      connection.cancel(callID)
    }
  }

  /// A stream whose only response part is `error`'s status, and whose requests go nowhere.
  private static func rejected(_ descriptor: MethodDescriptor, _ error: RPCError) -> RPCStream<Inbound, Outbound> {
    let (inbound, continuation) = AsyncThrowingStream.makeStream(of: RPCResponsePart<[UInt8]>.self)
    continuation.yield(.status(Status(code: Status.Code(error.code), message: error.message), error.metadata))
    continuation.finish()
    return RPCStream(
      descriptor: descriptor, inbound: RPCAsyncSequence(wrapping: inbound),
      outbound: RPCWriter.Closable(wrapping: DiscardingWriter()))
  }

  /// A usable connection: the open one, the one being dialed, or a new dial. While the last
  /// dial's backoff runs, a call fails at once with UNAVAILABLE (as gRPC's fail-fast calls do
  /// while a channel is in transient failure) unless it asked to wait for ready.
  private func connection(waitForReady: Bool) async throws -> ClientConnection {
    enum Next {
      case use(ClientConnection)
      case wait(EventLoopFuture<ClientConnection>)
      case dial(EventLoopPromise<ClientConnection>, after: ContinuousClock.Instant)
    }
    let next = try self.state.withLockedValue { state throws -> Next in
      guard !state.closed else {
        throw RPCError(code: .unavailable, message: "the client transport is shut down")
      }
      if let connection = state.connection, connection.isUsable { return .use(connection) }
      if let dialing = state.dialing { return .wait(dialing) }
      if !waitForReady && state.failures > 0 && ContinuousClock.now < state.notBefore {
        throw RPCError(
          code: .unavailable,
          message:
            "cannot connect to \(self.configuration.host):\(self.configuration.port); next attempt in \(state.notBefore - ContinuousClock.now)"
        )
      }
      let promise = self.group.next().makePromise(of: ClientConnection.self)
      state.dialing = promise.futureResult
      return .dial(promise, after: state.notBefore)
    }
    switch next {
    case .use(let connection):
      return connection
    case .wait(let future):
      return try await Self.unavailable { try await future.get() }
    case .dial(let promise, let notBefore):
      do {
        try await Task.sleep(until: notBefore)
        let connection = try await ClientConnection.dial(self.configuration, group: self.group, logger: self.logger)
        self.state.withLockedValue { state in
          state.connection = connection
          state.dialing = nil
          state.failures = 0
        }
        promise.succeed(connection)
        return connection
      } catch {
        let backoff = self.state.withLockedValue { state in
          state.dialing = nil
          state.failures += 1
          let exponent = min(state.failures - 1, 16)
          let delay = min(self.configuration.initialBackoff * (1 << exponent), self.configuration.maxBackoff)
          state.notBefore = .now + delay
          return delay
        }
        let failure = RPCError(
          code: .unavailable,
          message:
            "cannot connect to \(self.configuration.host):\(self.configuration.port): \(error); next attempt in \(backoff)"
        )
        promise.fail(failure)
        throw failure
      }
    }
  }

  private static func unavailable<R>(_ body: () async throws -> R) async throws -> R {
    do {
      return try await body()
    } catch let error as RPCError {
      throw error
    } catch {
      throw RPCError(code: .unavailable, message: "\(error)")
    }
  }
}

/// The request side of a call that was never sent.
struct DiscardingWriter: ClosableRPCWriterProtocol {
  typealias Element = RPCRequestPart<[UInt8]>
  func write(_ element: Element) async throws {}
  func write(contentsOf elements: some Sequence<Element>) async throws {}
  func finish() async {}
  func finish(throwing error: any Error) async {}
}

/// One call's state, shared by its request writer and its response parts.
struct CallState {
  var metadata: Metadata = [:]
  var payload: [UInt8] = []
  /// A unary call's message was written (an empty payload can be an empty message).
  var messageWritten = false
  /// The REQUEST went out.
  var started = false
  /// The call's status came from the connection, which had forgotten the call before it
  /// gave it.
  var statusReceived = false
}

/// A call's request side. Unary: the parts are buffered and sent as one REQUEST when the
/// request ends. Streaming: REQUEST (flagged streaming) with the first message as soon as it
/// is written, each further message as a MESSAGE frame, HALF_CLOSE at the end.
struct RequestWriter: ClosableRPCWriterProtocol {
  typealias Element = RPCRequestPart<[UInt8]>

  let callID: UInt64
  let path: String
  let streaming: Bool
  let connection: ClientConnection
  /// Where the call's RESPONSE goes; registered together with the REQUEST.
  let sink: ResponseSink
  private let state: NIOLockedValueBox<CallState>

  init(
    callID: UInt64, path: String, streaming: Bool, connection: ClientConnection, sink: ResponseSink,
    call: NIOLockedValueBox<CallState>
  ) {
    self.callID = callID
    self.path = path
    self.streaming = streaming
    self.connection = connection
    self.sink = sink
    self.state = call
  }

  func write(_ element: Element) async throws {
    switch element {
    case .metadata(let metadata): self.state.withLockedValue { $0.metadata.add(contentsOf: metadata) }
    case .message(let message) where self.streaming: self.send(message)
    case .message(let message):
      self.state.withLockedValue {
        $0.payload = message
        $0.messageWritten = true
      }
    }
  }

  func write(contentsOf elements: some Sequence<Element>) async throws {
    for element in elements { try await self.write(element) }
  }

  /// The REQUEST with `payload`, or, once a streaming call has started, a MESSAGE.
  private func send(_ payload: [UInt8]) {
    let metadata: Metadata? = self.state.withLockedValue { state in
      defer { state.started = true }
      return state.started ? nil : state.metadata
    }
    guard let metadata else {
      self.connection.send(
        .with {
          $0.callID = self.callID
          $0.kind = .message
          $0.payload = payload
        })
      return
    }
    self.connection.start(
      .with {
        $0.callID = self.callID
        $0.kind = .request
        $0.method = self.path
        $0.timeoutMs = metadata.timeoutMilliseconds
        $0.metadata = metadata.wireEntries
        $0.payload = payload
        $0.streaming = self.streaming
      }, self.sink)
  }

  func finish() async {
    guard self.streaming else {
      let (payload, written) = self.state.withLockedValue { ($0.payload, $0.messageWritten) }
      guard written else {
        // A unary request that ended without its message is not sent: the wire cannot tell a
        // missing message from an empty one, and the server would run the call on a request
        // of defaults. GRPCCore's retry executor can end a first attempt's request so (its
        // replay buffer, finished between a subscriber's two looks, ends that subscriber
        // before the message it holds); the call was not processed, so UNAVAILABLE, which
        // the retry policy answers with another attempt, whose replay holds the message.
        return await self.finish(throwing: RPCError.requestWithoutMessage)
      }
      return self.send(payload)
    }
    if !self.state.withLockedValue({ $0.started }) { self.send([]) }
    self.connection.send(
      .with {
        $0.callID = self.callID
        $0.kind = .halfClose
      })
  }

  func finish(throwing error: any Error) async {
    if self.state.withLockedValue({ $0.started }) {
      self.connection.cancel(self.callID)
    } else {
      // The request never went out: nothing to cancel on the server, but the caller waits.
      self.connection.gate.release()
      self.sink.finish(throwing: error)
    }
  }
}
