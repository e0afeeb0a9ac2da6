// The events service's rules: the event types there are and who may read an event. Pure.
// What a webhook URL may be, how a delivery is signed and retried: NestWebhooks.
public import NestDomain
public import NestProto

public typealias Event = Nest_Events_V1_Event
public typealias Webhook = Nest_Events_V1_Webhook
public typealias WebhookDelivery = Nest_Events_V1_WebhookDelivery

public enum EventTypes {
  /// Every event type the services record (Event.type in nest/events/v1/events.proto).
  public static let all: Set<String> = [
    "service.published", "service.offline", "service.base_updated",
    "authorization.applied", "authorization.approved", "authorization.rejected", "authorization.granted",
    "authorization.revoked", "authorization.expiring", "authorization.expired",
    "order.paid", "order.fulfilled", "order.renewed", "order.changed", "order.refunded", "order.cancelled",
    "instance.deployed", "instance.deploy_failed", "instance.suspended", "instance.resumed", "instance.expired",
    "instance.released", "instance.renewed", "instance.changed", "instance.upgradable", "instance.upgrading",
    "instance.upgraded", "instance.upgrade_failed", "instance.rolled_back", "instance.renew_failed",
    "instance.expiring",
    "permission_request.requested", "permission_request.decided",
    "obligation.recorded", "obligation.settled", "obligation.disputed", "obligation.cancelled",
    "statement.issued", "statement.settled", "statement.disputed",
    "webhook.disabled",
  ]

  /// The violations of a list of types (`field`), each unknown one named.
  public static func check(_ types: [String], field: String) throws(DomainError) {
    let unknown = types.filter { !Self.all.contains($0) }
    guard unknown.isEmpty else {
      throw .invalid(
        unknown.map {
          .init(field: field, description: "\"\($0)\" is not an event type (see nest.events.v1.Event.type)")
        })
    }
  }
}

public enum EventVisibility {
  /// Whether the caller (`role`, `accountID`) may read an event of `parties`: the operator
  /// reads every event; a party, the events that name it.
  public static func mayRead(
    role: Nest_Common_V1_Role, accountID: String, parties: [Nest_Common_V1_Party]
  ) -> Bool {
    role == .operator || parties.contains { $0.role == role && $0.accountID == accountID }
  }
}
