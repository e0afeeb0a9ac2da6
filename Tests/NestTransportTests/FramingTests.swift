// Framing on EmbeddedChannel: no socket, every byte under the test's control.
import NIOCore
import NIOEmbedded
import NestProto
import NestProtoTesting
import NestTransport
import Testing

private func framed(_ frame: Nest_Wire_V1_Frame) throws -> [UInt8] {
  try frame.lengthPrefixed()
}

private func decoderChannel(maxFrameBytes: Int = 4 << 20) throws -> EmbeddedChannel {
  let channel = EmbeddedChannel()
  try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameBytes: maxFrameBytes)))
  return channel
}

@Suite("Framing", .timeLimit(.minutes(3)))
struct FramingTests {
  let ping = Nest_Wire_V1_Frame.with {
    $0.kind = .ping
    $0.payload = Array("are you there".utf8)
  }
  let request = Nest_Wire_V1_Frame.with {
    $0.callID = 7
    $0.kind = .request
    $0.method = "/nest.testing.v1.Echo/Echo"
    $0.timeoutMs = 250
  }

  @Test("a frame split into single bytes arrives whole, once")
  func split() throws {
    let channel = try decoderChannel()
    let bytes = try framed(self.request)
    for (index, byte) in bytes.enumerated() {
      try channel.writeInbound(ByteBuffer(bytes: [byte]))
      let frame = try channel.readInbound(as: Nest_Wire_V1_Frame.self)
      #expect((frame != nil) == (index == bytes.count - 1))
    }
    #expect(try channel.readInbound(as: Nest_Wire_V1_Frame.self) == nil)
  }

  @Test("coalesced frames arrive one by one, in order")
  func coalesced() throws {
    let channel = try decoderChannel()
    try channel.writeInbound(ByteBuffer(bytes: try framed(self.ping) + framed(self.request) + framed(self.ping)))
    #expect(try channel.readInbound(as: Nest_Wire_V1_Frame.self) == self.ping)
    #expect(try channel.readInbound(as: Nest_Wire_V1_Frame.self) == self.request)
    #expect(try channel.readInbound(as: Nest_Wire_V1_Frame.self) == self.ping)
    #expect(try channel.readInbound(as: Nest_Wire_V1_Frame.self) == nil)
  }

  @Test("an oversized length is refused from the header alone, before the body arrives")
  func oversized() throws {
    let channel = try decoderChannel(maxFrameBytes: 1024)
    // Only the 4-byte header of a 1 GiB frame: nothing else is sent or allocated.
    #expect(throws: FrameError.tooLarge(length: 1 << 30, limit: 1024)) {
      try channel.writeInbound(ByteBuffer(bytes: [0x40, 0, 0, 0]))
    }
  }

  @Test("a body that is not a Frame is refused")
  func garbage() throws {
    let channel = try decoderChannel()
    #expect(throws: FrameError.self) {
      try channel.writeInbound(ByteBuffer(bytes: [0, 0, 0, 3, 0xff, 0xff, 0xff]))
    }
  }

  @Test("an unknown frame kind decodes and is kept as unrecognized, for handlers to ignore")
  func unknownKind() throws {
    let channel = try decoderChannel()
    let future = Nest_Wire_V1_Frame.with { $0.kind = .init(rawValue: 42) }
    try channel.writeInbound(ByteBuffer(bytes: try framed(future)))
    #expect(try channel.readInbound(as: Nest_Wire_V1_Frame.self)?.kind == .unrecognized(42))
  }

  @Test("the encoder writes the length prefix the decoder reads")
  func encoder() throws {
    let channel = EmbeddedChannel()
    try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(FrameEncoder()))
    try channel.writeOutbound(self.request)
    let buffer = try #require(try channel.readOutbound(as: ByteBuffer.self))
    #expect(Array(buffer.readableBytesView) == (try framed(self.request)))
  }
}
