// A unary call's request must carry its message. GRPCCore's retry executor can end a first
// attempt's request without it: the attempt reads the request back from a replay buffer, and
// a reader that finds the buffer empty, then finished by the time it waits, is ended with the
// message unread (`BroadcastAsyncSequence`, GRPCCore 2.x). NestTransport refuses to send such a
// request itself; over HTTP/2 it would reach the server as an empty stream and fail INTERNAL
// ("Empty stream."), which a retry policy does not retry. This interceptor, last before the
// transport, fails such an attempt UNAVAILABLE instead, on any transport: nothing was
// processed, and the retry policy's next attempt reads the whole buffer. (HTTP/2 peer clients
// use it; NestTransport's own check makes it unneeded there.)
public import GRPCCore
import NIOConcurrencyHelpers
import NestProto

public struct UnaryMessageGuard: ClientInterceptor {
  private let streamingMethods: Set<String>

  /// `streamingMethods`: the wire paths of the methods whose requests may hold no message.
  public init(streamingMethods: Set<String> = NestProtoMessages.streamingMethods) {
    self.streamingMethods = streamingMethods
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>,
    context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    guard !self.streamingMethods.contains(context.descriptor.wirePath) else { return try await next(request, context) }
    var request = request
    let producer = request.producer
    request.producer = { writer in
      let noted = NotingWriter(base: writer)
      try await producer(RPCWriter(wrapping: noted))
      guard noted.wrote else { throw RPCError.requestWithoutMessage }
    }
    return try await next(request, context)
  }
}

extension RPCError {
  /// A unary request that ended without its message: not sent, so safe to retry.
  static let requestWithoutMessage = RPCError(
    code: .unavailable, message: "the request ended without its message; it was not sent, and is safe to retry")
}

/// Writes through to `base`, noting whether anything was written.
private struct NotingWriter<Element: Sendable>: RPCWriterProtocol {
  let base: RPCWriter<Element>
  private let written = NIOLockedValueBox(false)

  init(base: RPCWriter<Element>) {
    self.base = base
  }

  var wrote: Bool { self.written.withLockedValue { $0 } }

  func write(_ element: Element) async throws {
    self.written.withLockedValue { $0 = true }
    try await self.base.write(element)
  }

  func write(contentsOf elements: some Sequence<Element>) async throws {
    for element in elements { try await self.write(element) }
  }
}
