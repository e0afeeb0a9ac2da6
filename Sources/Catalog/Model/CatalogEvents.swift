// What partners are told of the catalog: a service published (its first version, or a new
// default version) or taken offline, to its owner; a derived service's base published a
// newer version, to the derived service's owner. Pure.
public import NestDomain
public import NestProto

public enum CatalogEvents {
  public static func drafts(_ service: Nest_Catalog_V1_Service, before: Nest_Catalog_V1_Service?) -> [EventDraft] {
    let owner: Nest_Common_V1_Role = service.baseServiceID.isEmpty ? .isv : .distributor
    func draft(_ type: String) -> [EventDraft] {
      [
        EventDraft(
          type, subject: "service/\(service.id)", parties: Nest_Common_V1_Party.of(owner, service.ownerID),
          payload: .service(service), at: service.updatedAtUnixMs)
      ]
    }
    if service.status == .online
      && (before?.status != .online || before?.defaultVersionID != service.defaultVersionID)
    {
      return draft("service.published")
    }
    if service.status == .offline && before?.status != .offline { return draft("service.offline") }
    return []
  }

  /// A published a version newer than B's base: to B's owner, with B as read (its
  /// base_latest_version_id and base_security_update).
  public static func baseUpdated(_ derived: Nest_Catalog_V1_Service, at now: Int64) -> EventDraft {
    EventDraft(
      "service.base_updated", subject: "service/\(derived.id)",
      parties: Nest_Common_V1_Party.of(.distributor, derived.ownerID), payload: .service(derived), at: now)
  }
}
