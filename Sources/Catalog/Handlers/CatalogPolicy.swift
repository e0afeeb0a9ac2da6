// Who may see and act on the catalog's resources: the catalog's ownership policy, applied by
// every handler through the access declarations (nest/access/v1/access.proto) and by every
// list filter.
import NestAuth
public import NestProto
public import NestServiceKit

enum CatalogPolicy {
  /// A service's owner: the ISV for a base service, the distributor for a derived one.
  static func isOwner(ownerID: String, derived: Bool, _ caller: Principal) -> Bool {
    ownerID == caller.subject && caller.role == (derived ? .distributor : .isv)
  }

  /// Customers see ONLINE services only; nobody but its owner (and the platform) sees a DRAFT.
  static func canSee(_ service: Nest_Catalog_V1_Service, _ caller: Principal) -> Bool {
    switch caller.role {
    case .operator, .service: true
    case .customer: service.status == .online
    default: service.ownerID == caller.subject || service.status != .draft
    }
  }

  /// Customers see LISTED products only.
  static func canSee(_ product: Nest_Catalog_V1_Product, _ caller: Principal) -> Bool {
    caller.role != .customer || product.status == .listed
  }

  /// Narrows a list of services to what the caller may see.
  static func scope(_ filter: inout ServiceFilter, for caller: Principal) -> Bool {
    switch caller.role {
    case .customer:
      // Customers see ONLINE services only: another status asked for is an empty list.
      guard filter.statuses == nil || filter.statuses == [.online] else { return false }
      filter.statuses = [.online]
    case .isv, .distributor:
      filter.visibleToNonOwner = caller.subject
    default: break
    }
    return true
  }

  /// Narrows a list of products to what the caller may see.
  static func scope(_ filter: inout ProductFilter, for caller: Principal) {
    if caller.role == .customer { filter.status = .listed }
  }
}

extension Nest_Catalog_V1_Service: AccessControlled {
  public static let resourceName = "service"

  public func holds(_ relation: Relation, for caller: Principal) -> Bool {
    switch relation {
    case .owner: CatalogPolicy.isOwner(ownerID: self.ownerID, derived: !self.baseServiceID.isEmpty, caller)
    case .viewer: CatalogPolicy.canSee(self, caller)
    default: false
    }
  }
}

extension Nest_Catalog_V1_Product: AccessControlled {
  public static let resourceName = "product"

  public func holds(_ relation: Relation, for caller: Principal) -> Bool {
    switch relation {
    case .owner: CatalogPolicy.isOwner(ownerID: self.ownerID, derived: !self.baseServiceID.isEmpty, caller)
    case .viewer: CatalogPolicy.canSee(self, caller)
    default: false
    }
  }
}
