// Protocol rule 3: a handler's unexpected failure is INTERNAL with no internals in the
// message. GRPCCore would answer UNKNOWN; this interceptor logs the real error where the
// operator can see it and sends the client only "internal error".
public import GRPCCore
public import Logging

public struct InternalErrorServerInterceptor: ServerInterceptor {
  private let logger: Logger

  public init(logger: Logger) {
    self.logger = logger
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    do {
      return try await next(request, context)
    } catch let error as RPCError {
      throw error
    } catch let error as any RPCErrorConvertible {
      throw RPCError(error)
    } catch is CancellationError {
      throw RPCError(code: .cancelled, message: "the call was cancelled")
    } catch {
      self.logger.error(
        "handler failed", metadata: ["method": "\(context.descriptor.fullyQualifiedMethod)", "error": "\(error)"])
      throw RPCError(code: .internalError, message: "internal error")
    }
  }
}
