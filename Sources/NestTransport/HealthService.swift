// nest.health.v1.Health, served by every server without credentials (protocol rule 9).
public import GRPCCore
import NIOConcurrencyHelpers
public import NestProto

public final class HealthService: Nest_Health_V1_Health.SimpleServiceProtocol, Sendable {
  private let statuses: NIOLockedValueBox<[String: Nest_Health_V1_ServingStatus]>

  /// `services`: the fully qualified names served here, e.g. "nest.catalog.v1.CatalogService".
  public init(services: [String] = []) {
    var statuses: [String: Nest_Health_V1_ServingStatus] = ["": .serving]
    for service in services { statuses[service] = .serving }
    self.statuses = NIOLockedValueBox(statuses)
  }

  /// Marks a service (or, with "", the whole server) as serving or not.
  public func setStatus(_ status: Nest_Health_V1_ServingStatus, for service: String = "") {
    self.statuses.withLockedValue { $0[service] = status }
  }

  public func check(
    request: Nest_Health_V1_HealthCheckRequest, context: ServerContext
  ) async throws -> Nest_Health_V1_HealthCheckResponse {
    let status = self.statuses.withLockedValue { $0[request.service] } ?? .serviceUnknown
    return .with { $0.status = status }
  }
}
