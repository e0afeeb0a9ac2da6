// Wire protocol v1 framing (docs/protocol.md): a 4-byte big-endian length, then that many
// bytes of an encoded nest.wire.v1.Frame. The length is checked against the receiver's
// limit before a byte of the body is read or a buffer for it allocated (rule 7).
public import NIOCore
public import NestProto
import NestProtoRuntime

/// Why a byte stream stopped being a valid sequence of frames. Either ends the connection
/// with GOAWAY carrying `statusCode`.
public enum FrameError: Error, Hashable, Sendable {
  /// A frame announced more bytes than the receiver accepts.
  case tooLarge(length: Int, limit: Int)
  /// A frame body that is not a valid Frame message.
  case invalid(String)

  /// The gRPC status code the GOAWAY carries.
  public var statusCode: Int32 {
    switch self {
    case .tooLarge: 8  // RESOURCE_EXHAUSTED
    case .invalid: 3  // INVALID_ARGUMENT
    }
  }

  public var message: String {
    switch self {
    case .tooLarge(let length, let limit): "frame of \(length) bytes exceeds the limit of \(limit)"
    case .invalid(let reason): "invalid frame: \(reason)"
    }
  }
}

/// Splits the inbound byte stream into frames, however the bytes were split or coalesced.
public struct FrameDecoder: ByteToMessageDecoder, Sendable {
  public typealias InboundOut = Nest_Wire_V1_Frame

  /// The largest body accepted (default 4 MiB).
  public var maxFrameBytes: Int

  public init(maxFrameBytes: Int = 4 << 20) {
    self.maxFrameBytes = maxFrameBytes
  }

  public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws
    -> DecodingState
  {
    guard let frame = try Self.next(from: &buffer, maxFrameBytes: self.maxFrameBytes) else {
      return .needMoreData
    }
    context.fireChannelRead(Self.wrapInboundOut(frame))
    return .continue
  }

  public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool)
    throws -> DecodingState
  {
    // A half frame at EOF is simply dropped with the connection.
    try self.decode(context: context, buffer: &buffer)
  }

  /// The next whole frame in `buffer`, consuming it; nil when more bytes are needed.
  public static func next(from buffer: inout ByteBuffer, maxFrameBytes: Int) throws -> Nest_Wire_V1_Frame? {
    guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
    guard Int(length) <= maxFrameBytes else {
      throw FrameError.tooLarge(length: Int(length), limit: maxFrameBytes)
    }
    guard buffer.readableBytes >= 4 + Int(length) else { return nil }
    buffer.moveReaderIndex(forwardBy: 4)
    defer { buffer.moveReaderIndex(forwardBy: Int(length)) }
    let limits = NestDecodingLimits(maxMessageBytes: maxFrameBytes)
    do {
      return try buffer.withUnsafeReadableBytes { bytes throws(NestProtoError) in
        try Nest_Wire_V1_Frame(unsafeBytes: UnsafeRawBufferPointer(rebasing: bytes[..<Int(length)]), limits: limits)
      }
    } catch {
      throw FrameError.invalid(error.message)
    }
  }
}

/// Writes frames with their length prefix.
public struct FrameEncoder: MessageToByteEncoder, Sendable {
  public typealias OutboundIn = Nest_Wire_V1_Frame

  public init() {}

  public func encode(data frame: Nest_Wire_V1_Frame, out: inout ByteBuffer) throws {
    // Packed straight into the outbound buffer, after its length.
    try frame.serialize { size, write in
      out.reserveCapacity(out.writerIndex + 4 + size)
      out.writeInteger(UInt32(size))
      guard size > 0 else { return }
      let written = out.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { write($0.baseAddress!) }
      precondition(written == size, "protobuf-c packed \(written) bytes of \(size)")
    }
  }
}

extension Nest_Wire_V1_Frame {
  /// A connection-level GOAWAY: no call above `lastCallID` will be processed.
  public static func goAway(lastCallID: UInt64, code: Int32, message: String) -> Self {
    .with {
      $0.kind = .goaway
      $0.lastCallID = lastCallID
      $0.status = .with {
        $0.code = code
        $0.message = message
      }
    }
  }

  public static func hello(peer: String, maxFrameBytes: Int, maxConcurrentCalls: Int = 0) -> Self {
    .with {
      $0.kind = .hello
      $0.hello = .with {
        $0.version = 1
        $0.peer = peer
        $0.maxFrameBytes = UInt32(clamping: maxFrameBytes)
        $0.maxConcurrentCalls = UInt32(clamping: maxConcurrentCalls)
      }
    }
  }
}
