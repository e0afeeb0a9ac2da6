// Who may see and act on orders: their buyer and their seller (as the role they bought or
// sold as), through the access declarations of nest/order/v1/order.proto, and in every list.
import NestAuth
import NestDomain
public import NestProto
public import NestServiceKit

enum OrderPolicy {
  /// Lists show a party the orders it buys or sells. A buyer or seller filter must name the
  /// caller on one side (a seller may ask for one buyer's orders); naming only others is
  /// refused rather than quietly answered with nothing.
  static func scope(_ filter: Nest_Order_V1_ListOrdersRequest, for access: Access) throws
    -> (role: Nest_Common_V1_Role, id: String)?
  {
    guard !access.isPlatform else { return nil }
    let caller = access.caller
    let named = [filter.buyerID, filter.sellerID].filter { !$0.isEmpty }
    let customerNamesOther = caller.role == .customer && !filter.buyerID.isEmpty && filter.buyerID != caller.subject
    guard !customerNamesOther, named.isEmpty || named.contains(caller.subject) else {
      throw DomainError(
        .permissionDenied, "orders of another account",
        violations: [
          .init(field: filter.buyerID.isEmpty ? "seller_id" : "buyer_id", description: "names another account")
        ])
    }
    return (caller.role, caller.subject)
  }
}

extension Nest_Order_V1_Order: AccessControlled {
  public static let resourceName = "order"

  public func holds(_ relation: Relation, for caller: Principal) -> Bool {
    let buyer = self.buyer?.isCaller(caller) ?? false
    let seller = self.seller?.isCaller(caller) ?? false
    switch relation {
    case .buyer: return buyer
    case .seller: return seller
    case .party, .viewer: return buyer || seller
    default: return false
    }
  }
}
