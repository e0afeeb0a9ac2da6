// Domain events as the rules describe them: what happened to which subject, for whom. The
// service kit numbers them and records them with the change (EventLog).
public import NestProto

/// An event before it is numbered: what happened to which subject, who may read it, and the
/// subject as it stands after the change.
public struct EventDraft: Sendable {
  public var type: String
  /// "<kind>/<id>", e.g. "order/ord_3f2a...".
  public var subject: String
  /// Who may read the subject through its owning service's RPCs.
  public var parties: [Nest_Common_V1_Party]
  public var payload: Nest_Events_V1_Event.OneOf_Payload
  public var occurredAtUnixMs: Int64

  public init(
    _ type: String, subject: String, parties: [Nest_Common_V1_Party], payload: Nest_Events_V1_Event.OneOf_Payload,
    at occurredAtUnixMs: Int64
  ) {
    self.type = type
    self.subject = subject
    self.parties = parties
    self.payload = payload
    self.occurredAtUnixMs = occurredAtUnixMs
  }
}

extension Nest_Common_V1_Party {
  /// A party of an event: `role` with `accountID` (none when the id is empty).
  public static func of(_ role: Nest_Common_V1_Role, _ accountID: String) -> [Nest_Common_V1_Party] {
    accountID.isEmpty
      ? []
      : [
        .with {
          $0.role = role
          $0.accountID = accountID
        }
      ]
  }
}

extension EventDraft {
  /// The events of the statuses a resource entered (its new history entries): `type` names
  /// each status's event ("<kind>.<what>"), nil for a status no partner is told of.
  public static func entered(
    _ entries: [Nest_Common_V1_StatusChange], subject: String, parties: [Nest_Common_V1_Party],
    payload: Nest_Events_V1_Event.OneOf_Payload, type: (String) -> String?
  ) -> [EventDraft] {
    entries.compactMap { entry in
      type(entry.status).map {
        EventDraft($0, subject: subject, parties: parties, payload: payload, at: entry.changedAtUnixMs)
      }
    }
  }
}
