// A sale as marketplace-order asks settlement to record it, for the tests that record sales
// themselves (the ledger's, the access tests').
import NestDomain
public import NestProto

/// A direct sale: `customer` pays `amount` minor units of USD to `isv`, paid at time 1.
public func directSale(
  _ orderID: String, customer: String, isv: String, amount: Int64, commissionBps: UInt32 = 0
) -> Nest_Settlement_V1_RecordSaleRequest {
  .with {
    $0.orderID = orderID
    $0.kind = .customerOrder
    $0.buyer = .with {
      $0.role = .customer
      $0.accountID = customer
    }
    $0.seller = .with {
      $0.role = .isv
      $0.accountID = isv
    }
    $0.amount = MoneyMath.money("USD", amount)
    $0.commissionBps = commissionBps
    $0.scenario = .with {
      $0.scenario = .direct
      $0.isvID = isv
    }
    $0.paidAtUnixMs = 1
  }
}
