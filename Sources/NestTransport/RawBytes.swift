// A message as the bytes on the wire, for tools that call a method without its Swift types
// (`nestctl call`, hostile-input tests).
public import GRPCCore

public struct RawBytesSerializer: MessageSerializer {
  public init() {}
  public func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
}

public struct RawBytesDeserializer: MessageDeserializer {
  public init() {}
  public func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
    serializedMessageBytes.withUnsafeBytes { Array($0) }
  }
}

extension GRPCClient {
  /// One unary call of `descriptor` with `request` as encoded bytes; the response's bytes.
  public func unaryRaw(_ descriptor: MethodDescriptor, _ request: [UInt8], options: CallOptions = .defaults)
    async throws -> [UInt8]
  {
    try await self.unary(
      request: ClientRequest(message: request), descriptor: descriptor, serializer: RawBytesSerializer(),
      deserializer: RawBytesDeserializer(), options: options
    ) { try $0.message }
  }
}
