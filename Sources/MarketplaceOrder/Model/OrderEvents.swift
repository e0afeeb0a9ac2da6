public import NestDomain
// What partners are told of an order: paid, fulfilled (renewed or changed, for a renewal or a
// change order), refunded, cancelled; to its buyer and its seller, the parties that may read
// it. Pure.
public import NestProto

public enum OrderEvents {
  /// The events of the statuses `order` entered.
  public static func drafts(_ order: Order, entered: [Nest_Common_V1_StatusChange]) -> [EventDraft] {
    let parties = [order.buyer, order.seller].compactMap { $0 }.filter { !$0.accountID.isEmpty }
    return EventDraft.entered(entered, subject: "order/\(order.id)", parties: parties, payload: .order(order)) {
      switch $0 {
      case "PAID": "order.paid"
      case "FULFILLED":
        switch order.kind {
        case .renewal: "order.renewed"
        case .change: "order.changed"
        default: "order.fulfilled"
        }
      case "REFUNDED": "order.refunded"
      case "CANCELLED": "order.cancelled"
      default: nil
      }
    }
  }
}
