// The machine's limit for this framing: a SwiftNIO server that echoes each
// length-prefixed frame, and a client that pipelines frames and matches replies in order.
import NIOCore
import NIOPosix

struct LengthPrefixedDecoder: ByteToMessageDecoder {
  typealias InboundOut = ByteBuffer
  mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
    guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
      buffer.readableBytes >= 4 + Int(length)
    else { return .needMoreData }
    buffer.moveReaderIndex(forwardBy: 4)
    context.fireChannelRead(Self.wrapInboundOut(buffer.readSlice(length: Int(length))!))
    return .continue
  }
}

final class EchoFrameHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer
  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let body = Self.unwrapInboundIn(data)
    var out = context.channel.allocator.buffer(capacity: 4 + body.readableBytes)
    out.writeInteger(UInt32(body.readableBytes))
    out.writeImmutableBuffer(body)
    context.write(Self.wrapOutboundOut(out), promise: nil)
  }
  func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
}

func runRawEchoServer() async throws -> any Channel {
  try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
      channel.eventLoop.makeCompletedFuture {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LengthPrefixedDecoder()))
        try channel.pipeline.syncOperations.addHandler(EchoFrameHandler())
      }
    }
    .bind(host: "127.0.0.1", port: 0).get()
}

/// Replies arrive in request order on a connection: each completes the oldest promise.
final class PipelinedClientHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  var pending = CircularBuffer<EventLoopPromise<Void>>()
  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    self.pending.removeFirst().succeed()
  }
}

final class RawEchoClient: Sendable {
  let channel: any Channel
  private let handler: NIOLoopBound<PipelinedClientHandler>
  private let frame: ByteBuffer

  init(port: Int, bodyBytes: Int) async throws {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LengthPrefixedDecoder()))
          try channel.pipeline.syncOperations.addHandler(PipelinedClientHandler())
        }
      }
      .connect(host: "127.0.0.1", port: port).get()
    self.channel = channel
    self.handler = try await channel.eventLoop.submit {
      NIOLoopBound(
        try channel.pipeline.syncOperations.handler(type: PipelinedClientHandler.self), eventLoop: channel.eventLoop)
    }.get()
    var frame = ByteBuffer()
    frame.writeInteger(UInt32(bodyBytes))
    frame.writeRepeatingByte(0x5a, count: bodyBytes)
    self.frame = frame
  }

  func call() async throws {
    let promise = self.channel.eventLoop.makePromise(of: Void.self)
    self.channel.eventLoop.execute {
      self.handler.value.pending.append(promise)
      self.channel.writeAndFlush(self.frame, promise: nil)
    }
    try await promise.futureResult.get()
  }
}
