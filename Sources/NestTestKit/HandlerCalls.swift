// What a client would see of a failed call.
public import GRPCCore

/// The status code `body` failed with, as a client would receive it; nil if it succeeded.
public func code(of body: () async throws -> Void) async -> RPCError.Code? {
  do {
    try await body()
    return nil
  } catch let error as RPCError {
    return error.code
  } catch let error as any RPCErrorConvertible {
    return error.rpcErrorCode
  } catch {
    return .unknown
  }
}
