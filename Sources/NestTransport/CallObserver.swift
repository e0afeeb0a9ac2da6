// Per-call observability for any GRPCCore server: one structured log line per call
// (method, status, duration, peer) and, per method and status code, a call counter and a
// latency timer, and the calls in flight per method (swift-metrics: the application picks the
// backend; the executables serve Prometheus on their admin port).
public import GRPCCore
public import Logging
import Metrics
import NIOConcurrencyHelpers

public struct CallObserverServerInterceptor: ServerInterceptor {
  private let logger: Logger
  private let handles = MetricHandles()

  public init(logger: Logger) {
    self.logger = logger
  }

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    let start = ContinuousClock.now
    let method = context.descriptor.fullyQualifiedMethod
    let inFlight = self.handles.inFlight(method)
    inFlight.increment()
    defer { inFlight.decrement() }
    let code: String
    let response: StreamingServerResponse<Output>
    do {
      response = try await next(request, context)
      switch response.accepted {
      case .success: code = "OK"
      case .failure(let error): code = "\(error.code)"
      }
    } catch let error as RPCError {
      self.record(method: method, code: "\(error.code)", start: start, peer: context.remotePeer)
      throw error
    } catch {
      self.record(method: method, code: "unknown", start: start, peer: context.remotePeer)
      throw error
    }
    self.record(method: method, code: code, start: start, peer: context.remotePeer)
    return response
  }

  private func record(method: String, code: String, start: ContinuousClock.Instant, peer: String) {
    let elapsed = ContinuousClock.now - start
    let nanoseconds = elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
    let (calls, duration) = self.handles.outcome(method, code)
    calls.increment()
    duration.recordNanoseconds(nanoseconds)
    self.logger.info(
      "rpc",
      metadata: [
        "method": "\(method)", "code": "\(code)", "duration_us": "\(nanoseconds / 1_000)", "peer": "\(peer)",
      ])
  }
}

/// The metric handles of each method and status code, made once: making a handle asks the
/// metrics backend to find it by label and dimensions, which costs more than the update.
final class MetricHandles: Sendable {
  private struct Key: Hashable {
    var method: String
    var code: String
  }
  private let meters = NIOLockedValueBox<[String: Meter]>([:])
  private let outcomes = NIOLockedValueBox<[Key: (Counter, Metrics.Timer)]>([:])

  func inFlight(_ method: String) -> Meter {
    self.meters.withLockedValue { meters in
      if let meter = meters[method] { return meter }
      let meter = Meter(label: "nest_rpc_in_flight", dimensions: [("method", method)])
      meters[method] = meter
      return meter
    }
  }

  func outcome(_ method: String, _ code: String) -> (Counter, Metrics.Timer) {
    self.outcomes.withLockedValue { outcomes in
      let key = Key(method: method, code: code)
      if let handles = outcomes[key] { return handles }
      let dimensions = [("method", method), ("code", code)]
      let handles = (
        Counter(label: "nest_rpc_calls_total", dimensions: dimensions),
        Metrics.Timer(label: "nest_rpc_duration", dimensions: dimensions)
      )
      outcomes[key] = handles
      return handles
    }
  }
}
