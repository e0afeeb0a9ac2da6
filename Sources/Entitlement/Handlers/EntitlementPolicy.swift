// Who may see and act on entitlement's resources: its ownership policy, applied by every
// handler through the access declarations (nest/access/v1/access.proto) and by every list
// filter. Operators and services are no party: the access interceptor and `Access` let them
// through where their role is declared.
import NestAuth
public import NestProto
public import NestServiceKit

enum EntitlementPolicy {
  static func isISV(_ isvID: String, _ caller: Principal) -> Bool { caller.role == .isv && isvID == caller.subject }

  static func isDistributor(_ distributorID: String, _ caller: Principal) -> Bool {
    caller.role == .distributor && distributorID == caller.subject
  }

  static func isCustomer(_ customerID: String, _ caller: Principal) -> Bool {
    caller.role == .customer && customerID == caller.subject
  }

  /// Lists of authorizations show a party its own.
  static func scope(_ filter: inout Nest_Entitlement_V1_ListDistributionAuthorizationsRequest, for caller: Principal) {
    if caller.role == .isv { filter.isvID = caller.subject }
    if caller.role == .distributor { filter.distributorID = caller.subject }
  }

  /// Lists of instances show each party those it is party to.
  static func scope(_ filter: inout Nest_Entitlement_V1_ListServiceInstancesRequest, for caller: Principal) {
    switch caller.role {
    case .customer: filter.customerID = caller.subject
    case .distributor: filter.distributorID = caller.subject
    case .isv: filter.isvID = caller.subject
    default: break
    }
  }

  /// Lists of permission requests show a customer its requests, an owner those it decides.
  static func scope(_ filter: inout Nest_Entitlement_V1_ListPermissionRequestsRequest, for caller: Principal) {
    switch caller.role {
    case .customer: filter.requesterID = caller.subject
    case .isv, .distributor: filter.ownerID = caller.subject
    default: break
    }
  }
}

extension Nest_Entitlement_V1_DistributionAuthorization: AccessControlled {
  public static let resourceName = "authorization"

  public func holds(_ relation: Relation, for caller: Principal) -> Bool {
    switch relation {
    case .isv: EntitlementPolicy.isISV(self.isvID, caller)
    case .party, .viewer:
      EntitlementPolicy.isISV(self.isvID, caller) || EntitlementPolicy.isDistributor(self.distributorID, caller)
    default: false
    }
  }
}

/// A (base service, distributor) pair CheckDistribution is asked about: its parties are the
/// distributor and, once an authorization exists, the ISV that granted it.
struct DistributionPair: AccessControlled {
  static let resourceName = "authorization"
  var distributorID: String
  var isvID: String

  func holds(_ relation: Relation, for caller: Principal) -> Bool {
    guard relation == .party || relation == .viewer else { return false }
    return EntitlementPolicy.isDistributor(self.distributorID, caller)
      || (!self.isvID.isEmpty && EntitlementPolicy.isISV(self.isvID, caller))
  }
}

/// A base service as the catalog reports it, for GrantDistribution: its owner grants.
struct BaseService: AccessControlled {
  static let resourceName = "service"
  var service: Nest_Catalog_V1_Service

  func holds(_ relation: Relation, for caller: Principal) -> Bool {
    switch relation {
    case .owner: EntitlementPolicy.isISV(self.service.ownerID, caller)
    case .viewer: self.service.ownerID == caller.subject || self.service.status != .draft
    default: false
    }
  }
}

extension Nest_Entitlement_V1_ServiceInstance: AccessControlled {
  public static let resourceName = "instance"

  public func holds(_ relation: Relation, for caller: Principal) -> Bool {
    switch relation {
    case .party, .viewer:
      EntitlementPolicy.isCustomer(self.customerID, caller) || EntitlementPolicy.isISV(self.isvID, caller)
        || EntitlementPolicy.isDistributor(self.distributorID, caller)
    case .customer: EntitlementPolicy.isCustomer(self.customerID, caller)
    case .resourceOwner: self.resourceOwner?.isCaller(caller) ?? false
    default: false
    }
  }
}

extension Nest_Entitlement_V1_PermissionRequest: AccessControlled {
  public static let resourceName = "permission request"

  public func holds(_ relation: Relation, for caller: Principal) -> Bool {
    let owner = self.owner?.isCaller(caller) ?? false
    switch relation {
    case .resourceOwner: return owner
    case .party, .viewer: return owner || EntitlementPolicy.isCustomer(self.requesterID, caller)
    default: return false
    }
  }
}
