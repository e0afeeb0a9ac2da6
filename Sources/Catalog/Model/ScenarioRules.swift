// docs/design.md §1: what a service's distribution scenario is, from the type of A, whether
// A is listed on the marketplace, and the type of B. Pure: no storage, no RPC.
public import NestDomain
public import NestProto

/// What the rules need to know about one service.
public struct ServiceFacts: Hashable, Sendable {
  public var id: String
  public var type: Nest_Common_V1_ServiceType
  public var ownerID: String
  /// Whether the service has a listed product on the marketplace.
  public var listed: Bool
  /// The version the facts are about (B's pin on A, or A's default version).
  public var versionID: String

  public init(id: String, type: Nest_Common_V1_ServiceType, ownerID: String, listed: Bool, versionID: String) {
    self.id = id
    self.type = type
    self.ownerID = ownerID
    self.listed = listed
    self.versionID = versionID
  }
}

public enum ScenarioRules {
  /// A derived service B may be built on A only in these type pairs: a FULLY_MANAGED A
  /// cannot become a PRIVATE B.
  public static func checkDerivedType(base: Nest_Common_V1_ServiceType, derived: Nest_Common_V1_ServiceType)
    throws(DomainError)
  {
    guard derived == .private || derived == .fullyManaged else {
      throw .invalid([.init(field: "type", description: "must be PRIVATE or FULLY_MANAGED")])
    }
    if base == .fullyManaged && derived == .private {
      throw DomainError(
        .failedPrecondition, "a FULLY_MANAGED base service cannot be distributed as a PRIVATE service",
        violations: [.init(field: "type", description: "must be FULLY_MANAGED for a FULLY_MANAGED base")])
    }
  }

  /// The scenario of selling `derived` (built on `base`), or of selling `base` directly
  /// when `derived` is nil.
  public static func resolve(base: ServiceFacts, derived: ServiceFacts?) throws(DomainError)
    -> Nest_Common_V1_ScenarioResolution
  {
    var resolution = Nest_Common_V1_ScenarioResolution()
    resolution.baseServiceID = base.id
    resolution.baseVersionID = base.versionID
    resolution.baseServiceType = base.type
    resolution.baseListed = base.listed
    resolution.isvID = base.ownerID
    let customer = Nest_Common_V1_Party.with { $0.role = .customer }  // the buyer, filled in per order
    let isv = Nest_Common_V1_Party.with {
      $0.role = .isv
      $0.accountID = base.ownerID
    }

    guard let derived else {
      // A direct sale: only of a listed A; the instance follows A's type.
      guard base.listed else {
        throw DomainError(.failedPrecondition, "service \(base.id) is not listed on the marketplace")
      }
      resolution.serviceID = base.id
      resolution.serviceType = base.type
      resolution.scenario = .direct
      resolution.settlementMode = .online
      let owner = base.type == .private ? customer : isv
      resolution.resourceOwner = owner
      resolution.feePayer = owner
      resolution.accessMode = base.type == .private ? .resources : .logonURL
      return resolution
    }

    try checkDerivedType(base: base.type, derived: derived.type)
    let distributor = Nest_Common_V1_Party.with {
      $0.role = .distributor
      $0.accountID = derived.ownerID
    }
    resolution.serviceID = derived.id
    resolution.serviceType = derived.type
    resolution.distributorID = derived.ownerID
    resolution.baseVersionID = derived.versionID
    switch (base.type, derived.type, base.listed) {
    case (.private, .private, _):
      resolution.scenario = .scenario1
      resolution.resourceOwner = customer
      resolution.feePayer = customer
      resolution.accessMode = .resources
      resolution.settlementMode = .offline
    case (.private, .fullyManaged, _):
      resolution.scenario = .scenario2
      resolution.resourceOwner = distributor
      resolution.feePayer = distributor
      resolution.accessMode = .logonURL
      resolution.settlementMode = .offline
    case (.fullyManaged, .fullyManaged, true):
      resolution.scenario = .scenario3
      resolution.resourceOwner = isv
      resolution.feePayer = isv
      resolution.accessMode = .logonURL
      resolution.settlementMode = .online
    case (.fullyManaged, .fullyManaged, false):
      resolution.scenario = .scenario4
      resolution.resourceOwner = isv
      resolution.feePayer = isv
      resolution.accessMode = .logonURL
      resolution.settlementMode = .offline
    default:
      throw DomainError(.failedPrecondition, "no scenario for a \(base.type) base and a \(derived.type) service")
    }
    return resolution
  }

  /// The facts of a catalog entry, about `versionID`.
  public static func facts(_ service: Nest_Catalog_V1_Service, version versionID: String) -> ServiceFacts {
    ServiceFacts(
      id: service.id, type: service.type, ownerID: service.ownerID, listed: service.listedOnMarketplace,
      versionID: versionID)
  }

  /// The scenario of selling `service`; `base` is its base service when it is derived.
  public static func resolve(service: Nest_Catalog_V1_Service, base: Nest_Catalog_V1_Service?) throws(DomainError)
    -> Nest_Common_V1_ScenarioResolution
  {
    guard !service.baseServiceID.isEmpty else {
      guard !service.defaultVersionID.isEmpty else {
        throw DomainError(.failedPrecondition, "service \(service.id) has no published version")
      }
      return try resolve(base: facts(service, version: service.defaultVersionID), derived: nil)
    }
    guard let base else {
      throw DomainError(.failedPrecondition, "the base service \(service.baseServiceID) is gone")
    }
    return try resolve(
      base: facts(base, version: service.baseVersionID), derived: facts(service, version: service.baseVersionID))
  }

  /// Only a base service (not itself derived) can be built on.
  public static func checkBase(_ base: Nest_Catalog_V1_Service) throws(DomainError) {
    guard base.baseServiceID.isEmpty else {
      throw DomainError.notFound("base service", base.id, field: "base_service_id")
    }
  }

  /// The version a derived service is built on: a PUBLISHED version of the base.
  public static func publishedVersion(
    _ version: Nest_Catalog_V1_ServiceVersion?, of base: Nest_Catalog_V1_Service, id: String
  ) throws(DomainError) -> Nest_Catalog_V1_ServiceVersion {
    guard let version, version.serviceID == base.id, version.status == .published else {
      throw DomainError(
        .failedPrecondition, "the base service has no published version \(id)",
        violations: [.init(field: "base_version_id", description: "must be a published version of the base service")])
    }
    return version
  }
}
