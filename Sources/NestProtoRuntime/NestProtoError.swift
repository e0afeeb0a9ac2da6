public import GRPCCore

/// Why bytes did not decode or a message did not encode. Every decoding failure of
/// untrusted input ends here, never in a crash.
public struct NestProtoError: Error, Hashable, Sendable, CustomStringConvertible {
  /// What kind of failure; maps onto a gRPC status code.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Wrapped: Hashable, Sendable {
      case invalidArgument
      case resourceExhausted
    }
    private let wrapped: Wrapped

    /// The bytes are not a valid message of the expected type: malformed, nested too
    /// deeply, or with a string that is not UTF-8.
    public static let invalidArgument = Code(wrapped: .invalidArgument)
    /// The bytes would take more than the configured size or memory to decode.
    public static let resourceExhausted = Code(wrapped: .resourceExhausted)

    public var description: String {
      switch self.wrapped {
      case .invalidArgument: "INVALID_ARGUMENT"
      case .resourceExhausted: "RESOURCE_EXHAUSTED"
      }
    }

    var rpcCode: RPCError.Code {
      switch self.wrapped {
      case .invalidArgument: .invalidArgument
      case .resourceExhausted: .resourceExhausted
      }
    }
  }

  public var code: Code
  public var message: String

  public init(_ code: Code, _ message: String) {
    self.code = code
    self.message = message
  }

  public var description: String { "\(self.code): \(self.message)" }
}

extension NestProtoError: RPCErrorConvertible {
  public var rpcErrorCode: RPCError.Code { self.code.rpcCode }
  public var rpcErrorMessage: String { self.message }
}
