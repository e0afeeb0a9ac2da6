import Foundation
// Traces: the W3C trace context (`traceparent`) travels in every call's metadata, over both
// protocols, and with every outbox row, so that a delivery made minutes later continues the
// trace of the call that queued it. A span per call received and per call made to a peer
// (swift-distributed-tracing); the executables export them over OTLP (swift-otel) when the
// standard OTEL_* variables ask for it, and leave tracing off (no-op) otherwise.
public import GRPCCore
public import Logging
import OTel
public import ServiceLifecycle
public import Tracing

// MARK: Carrying the context

/// Reads and writes trace headers in gRPC metadata.
struct MetadataCarrier: Extractor, Injector {
  func extract(key: String, from carrier: Metadata) -> String? {
    carrier[stringValues: key].first(where: { _ in true })
  }

  func inject(_ value: String, forKey key: String, into carrier: inout Metadata) {
    carrier.replaceOrAddString(value, forKey: key)
  }
}

/// Reads and writes trace headers in a dictionary (an outbox row's stored context).
struct DictionaryCarrier: Extractor, Injector {
  func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
  func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
}

public enum TraceContext {
  /// The current span's `traceparent`, to store with work done later; empty when tracing is
  /// off or no span is current.
  public static func currentTraceParent() -> String {
    guard let context = ServiceContext.current else { return "" }
    var headers: [String: String] = [:]
    InstrumentationSystem.instrument.inject(context, into: &headers, using: DictionaryCarrier())
    return headers["traceparent"] ?? ""
  }

  /// A context continuing the trace `traceParent` names (or a new trace when it is empty).
  public static func continuing(_ traceParent: String) -> ServiceContext {
    var context = ServiceContext.topLevel
    if !traceParent.isEmpty {
      InstrumentationSystem.instrument.extract(["traceparent": traceParent], into: &context, using: DictionaryCarrier())
    }
    return context
  }
}

// MARK: Interceptors

/// A server span per call, continuing the caller's trace when its metadata carries one.
public struct TracingServerInterceptor: ServerInterceptor {
  public init() {}

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>,
    context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    var parent = ServiceContext.current ?? .topLevel
    InstrumentationSystem.instrument.extract(request.metadata, into: &parent, using: MetadataCarrier())
    let descriptor = context.descriptor
    return try await withSpan(descriptor.fullyQualifiedMethod, context: parent, ofKind: .server) { span in
      span.attributes["net.peer"] = context.remotePeer
      return try await span.call(descriptor) { try await next(request, context) }
    }
  }
}

/// A client span per call to a peer, whose context the call's metadata carries on.
public struct TracingClientInterceptor: ClientInterceptor {
  public init() {}

  public func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingClientRequest<Input>,
    context: ClientContext,
    next: (StreamingClientRequest<Input>, ClientContext) async throws -> StreamingClientResponse<Output>
  ) async throws -> StreamingClientResponse<Output> {
    let descriptor = context.descriptor
    return try await withSpan(descriptor.fullyQualifiedMethod, ofKind: .client) { span in
      var request = request
      InstrumentationSystem.instrument.inject(
        ServiceContext.current ?? .topLevel, into: &request.metadata, using: MetadataCarrier())
      return try await span.call(descriptor) { try await next(request, context) }
    }
  }
}

extension Span {
  /// Runs the call `descriptor` names within this span: the rpc.* attributes, and an error
  /// status for a call that fails, whether as a thrown error or a failed response.
  fileprivate func call<Response>(
    _ descriptor: MethodDescriptor, _ body: () async throws -> Response
  ) async throws -> Response where Response: CallResponse {
    self.attributes["rpc.system"] = "grpc"
    self.attributes["rpc.service"] = descriptor.service.fullyQualifiedService
    self.attributes["rpc.method"] = descriptor.method
    do {
      let response = try await body()
      if let error = response.failure { self.record(error) }
      return response
    } catch let error as RPCError {
      self.record(error)
      throw error
    }
  }

  /// A call that ended in `error`: its status code as the span's attribute, and an error
  /// status.
  fileprivate func record(_ error: RPCError) {
    self.attributes["rpc.grpc.status_code"] = error.code.rawValue
    self.setStatus(SpanStatus(code: .error, message: "\(error.code): \(error.message)"))
  }
}

// MARK: Export

public enum TraceExport {
  /// Whether the OTEL_* variables ask for traces: an OTLP endpoint or a traces exporter
  /// other than `none`, and the SDK not disabled.
  public static func requested(by environment: [String: String]) -> Bool {
    if environment["OTEL_SDK_DISABLED"]?.lowercased() == "true" { return false }
    if let exporter = environment["OTEL_TRACES_EXPORTER"], !exporter.isEmpty { return exporter != "none" }
    return [
      "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ].contains { environment[$0]?.isEmpty == false }
  }

  /// The tracer and the part that exports its spans, when the environment asks for traces:
  /// OTLP over gRPC to localhost:4317 unless OTEL_EXPORTER_OTLP_* say otherwise, named
  /// `serviceName` unless OTEL_SERVICE_NAME does.
  public static func backend(serviceName: String, environment: [String: String]) throws -> (
    tracer: any Tracer, service: any Service
  )? {
    guard Self.requested(by: environment) else { return nil }
    var configuration = OTel.Configuration.default
    configuration.serviceName = serviceName
    configuration.traces.otlpExporter.protocol = .grpc
    configuration.traces.otlpExporter.endpoint = "http://localhost:4317"
    configuration.metrics.enabled = false
    configuration.logs.enabled = false
    // Environment variables override these (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_BSP_*, …).
    let backend = try OTel.makeTracingBackend(configuration: configuration)
    return (backend.factory, backend.service)
  }

  /// Log lines of a call carry its trace and span ids (when tracing is on).
  public static let loggingMetadata: Logger.MetadataProvider = OTel.makeLoggingMetadataProvider()
}

/// A server's or a client's streaming response: whether it failed.
protocol CallResponse { var failure: RPCError? { get } }

extension StreamingServerResponse: CallResponse {
  var failure: RPCError? {
    if case .failure(let error) = self.accepted { return error }
    return nil
  }
}

extension StreamingClientResponse: CallResponse {
  var failure: RPCError? {
    if case .failure(let error) = self.accepted { return error }
    return nil
  }
}
