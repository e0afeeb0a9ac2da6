// Who may see what in settlement: an account's holder its own balance and postings; the ISV
// and the distributor of a pair their obligations and statements; through the access
// declarations of nest/settlement/v1/settlement.proto, and in every list.
import NestAuth
import NestDomain
public import NestProto
public import NestServiceKit

enum SettlementPolicy {
  /// The account a caller asks about: its own when unset; any for an operator. Another's is
  /// PERMISSION_DENIED (the caller knows whose it named).
  static func account(_ requested: AccountRef?, for access: Access) throws(DomainError) -> AccountRef {
    let caller = access.caller
    guard let requested else {
      guard !access.isPlatform else { throw .invalid("account", "is required for an operator") }
      return try LedgerRules.account(
        .with {
          $0.role = caller.role
          $0.accountID = caller.subject
        })
    }
    switch requested.kind {
    case .platform, .cloud:
      guard requested.accountID.isEmpty else {
        throw .invalid("account.account_id", "must be empty for PLATFORM and CLOUD")
      }
    case .customer, .distributor, .isv:
      try DomainError.requireNonEmpty(("account.account_id", requested.accountID))
    default:
      throw .invalid("account.kind", "is required")
    }
    _ = try access.authorize(requested, notFound: .notFound("account", requested.accountID, field: "account"))
    return requested
  }

  /// Lists of obligations and statements show an ISV or distributor its own pairs; a filter
  /// naming another account on the caller's own side is refused.
  static func party(isvID: String, distributorID: String, for access: Access) throws(DomainError) -> String? {
    guard !access.isPlatform else { return nil }
    let caller = access.caller
    let own = caller.role == .isv ? isvID : distributorID
    guard own.isEmpty || own == caller.subject else {
      throw DomainError(
        .permissionDenied, "obligations and statements of another account",
        violations: [
          .init(field: caller.role == .isv ? "isv_id" : "distributor_id", description: "names another account")
        ])
    }
    return caller.subject
  }
}

extension Nest_Settlement_V1_AccountRef: AccessControlled {
  public static let resourceName = "account"

  /// An account's holder is the party of its kind and id; everybody may name an account
  /// (no existence leaks from a refusal), so another's is PERMISSION_DENIED.
  public func holds(_ relation: Relation, for caller: Principal) -> Bool {
    switch relation {
    case .owner:
      let kind: Nest_Settlement_V1_AccountKind =
        switch caller.role {
        case .customer: .customer
        case .distributor: .distributor
        case .isv: .isv
        default: .unspecified
        }
      return self.kind == kind && self.accountID == caller.subject
    case .viewer: return true
    default: return false
    }
  }
}

extension Nest_Settlement_V1_OfflineObligation: AccessControlled {
  public static let resourceName = "obligation"

  public func holds(_ relation: Relation, for caller: Principal) -> Bool {
    switch relation {
    case .party, .viewer:
      (caller.role == .isv && self.isvID == caller.subject)
        || (caller.role == .distributor && self.distributorID == caller.subject)
    default: false
    }
  }
}

extension Nest_Settlement_V1_Statement: AccessControlled {
  public static let resourceName = "statement"

  public func holds(_ relation: Relation, for caller: Principal) -> Bool {
    let isv = caller.role == .isv && self.isvID == caller.subject
    let distributor = caller.role == .distributor && self.distributorID == caller.subject
    switch relation {
    case .isv: return isv
    case .distributor: return distributor
    case .party, .viewer: return isv || distributor
    default: return false
    }
  }
}

/// The pair a statement is issued for, before it exists: its ISV and its distributor.
struct StatementPair: AccessControlled {
  static let resourceName = "statement"
  var isvID: String
  var distributorID: String

  func holds(_ relation: Relation, for caller: Principal) -> Bool {
    guard relation == .party || relation == .viewer else { return false }
    return (caller.role == .isv && self.isvID == caller.subject)
      || (caller.role == .distributor && self.distributorID == caller.subject)
  }
}
