// A call's response on its way from the connection's event loop to the caller. A unary
// call's parts all come in its one RESPONSE frame: they are handed over whole, with one
// wake-up of the caller (`UnaryResponse`, one allocation); a streaming call's arrive over
// time, through a stream.
import GRPCCore
import NIOConcurrencyHelpers
import Synchronization

/// Where the connection puts a call's response parts.
enum ResponseSink: Sendable {
  case stream(AsyncThrowingStream<RPCResponsePart<[UInt8]>, any Error>.Continuation)
  case unary(UnaryResponse)

  func yield(_ part: RPCResponsePart<[UInt8]>) {
    switch self {
    case .stream(let continuation): continuation.yield(part)
    case .unary(let response): response.yield(part)
    }
  }

  func finish() {
    switch self {
    case .stream(let continuation): continuation.finish()
    case .unary(let response): response.finish(throwing: nil)
    }
  }

  func finish(throwing error: any Error) {
    switch self {
    case .stream(let continuation): continuation.finish(throwing: error)
    case .unary(let response): response.finish(throwing: error)
    }
  }
}

/// A unary call's response parts, gathered on the event loop and read by the caller once the
/// response has ended (or failed).
final class UnaryResponse: Sendable {
  private struct State {
    var parts: [RPCResponsePart<[UInt8]>] = []
    var read = 0
    var ended = false
    var failure: (any Error)? = nil
    var waiter: UnsafeContinuation<Void, Never>? = nil
  }
  private let state = Mutex(State())

  func yield(_ part: RPCResponsePart<[UInt8]>) {
    self.state.withLock { state in
      guard !state.ended else { return }
      if state.parts.isEmpty { state.parts.reserveCapacity(3) }
      state.parts.append(part)
    }
  }

  /// Ends the response (with `error`, after the parts already given); only the first end
  /// counts.
  func finish(throwing error: (any Error)?) {
    let waiter = self.state.withLock { state -> UnsafeContinuation<Void, Never>? in
      guard !state.ended else { return nil }
      state.ended = true
      state.failure = error
      defer { state.waiter = nil }
      return state.waiter
    }
    waiter?.resume()
  }

  /// The next part, once the response has ended; nil after the last.
  func next() async throws -> RPCResponsePart<[UInt8]>? {
    if !self.state.withLock({ $0.ended }) {
      await withTaskCancellationHandler {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
          let ended = self.state.withLock { state in
            if !state.ended { state.waiter = continuation }
            return state.ended
          }
          if ended { continuation.resume() }
        }
      } onCancel: {
        self.finish(throwing: RPCError(code: .cancelled, message: "the call was cancelled"))
      }
    }
    return try self.state.withLock { state throws -> RPCResponsePart<[UInt8]>? in
      if state.read < state.parts.count {
        defer { state.read += 1 }
        return state.parts[state.read]
      }
      if let failure = state.failure {
        state.failure = nil
        throw failure
      }
      return nil
    }
  }
}

/// A call's response parts as GRPCCore reads them, noting in the call's state when the
/// status came: only the connection gives it, after it has forgotten the call. (An end for
/// any other reason, the caller's task cancelled above all, leaves the call to be cancelled.)
struct CallResponseParts: AsyncSequence, Sendable {
  typealias Element = RPCResponsePart<[UInt8]>
  typealias Failure = any Error

  enum Source: Sendable {
    case stream(AsyncThrowingStream<RPCResponsePart<[UInt8]>, any Error>)
    case unary(UnaryResponse)
  }

  let source: Source
  let call: NIOLockedValueBox<CallState>

  func makeAsyncIterator() -> Iterator {
    switch self.source {
    case .stream(let stream): Iterator(source: .stream(stream.makeAsyncIterator()), call: self.call)
    case .unary(let response): Iterator(source: .unary(response), call: self.call)
    }
  }

  struct Iterator: AsyncIteratorProtocol {
    enum Source {
      case stream(AsyncThrowingStream<RPCResponsePart<[UInt8]>, any Error>.AsyncIterator)
      case unary(UnaryResponse)
    }
    var source: Source
    let call: NIOLockedValueBox<CallState>

    mutating func next() async throws -> RPCResponsePart<[UInt8]>? {
      let part: RPCResponsePart<[UInt8]>?
      switch self.source {
      case .stream(var parts):
        part = try await parts.next()
        self.source = .stream(parts)
      case .unary(let response):
        part = try await response.next()
      }
      if case .status? = part { self.call.withLockedValue { $0.statusReceived = true } }
      return part
    }
  }
}
