// The GRPCCore serializer and deserializer that generated service stubs use.
public import GRPCCore

/// Encodes a generated message for GRPCCore.
public struct NestProtoSerializer<Message: NestMessage>: MessageSerializer {
  public init() {}

  public func serialize<Bytes: GRPCContiguousBytes>(_ message: Message) throws -> Bytes {
    do {
      return Bytes(try message.serializedBytes())
    } catch {
      throw RPCError(code: .internalError, message: "could not encode \(Message.protoMessageName): \(error.message)")
    }
  }
}

/// Decodes a generated message for GRPCCore, through the guard: malformed input is
/// INVALID_ARGUMENT, input that would cost too much is RESOURCE_EXHAUSTED.
public struct NestProtoDeserializer<Message: NestMessage>: MessageDeserializer {
  public let limits: NestDecodingLimits

  public init(limits: NestDecodingLimits = .default) {
    self.limits = limits
  }

  public func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> Message {
    do {
      return try bytes.withUnsafeBytes { buffer throws(NestProtoError) in
        try Message(unsafeBytes: buffer, limits: self.limits)
      }
    } catch let error as NestProtoError {
      throw RPCError(
        code: error.code.rpcCode, message: "\(Message.protoMessageName): \(error.message)")
    }
  }
}
