import GRPCCore
import MarketplaceOrder
import NestDomain
import NestProto
import NestServiceKit
import Testing

@Suite("Order rules")
struct OrderRulesTests {
  static let allowed: [String: OrderStatus] = [
    "created/pay": .paid, "paid/fulfil": .fulfilled, "created/cancel": .cancelled, "paid/refund": .refunded,
    "fulfilled/refund": .refunded,
  ]

  @Test("every action from every status: allowed exactly where the life cycle says")
  func transitions() {
    let statuses: [OrderStatus] = [.created, .paid, .fulfilled, .cancelled, .refunded]
    for status in statuses {
      for action in OrderAction.allCases {
        let key = "\(status)/\(action.rawValue)"
        do {
          #expect(try OrderRules.transition(from: status, action) == Self.allowed[key], "\(key)")
        } catch {
          #expect(Self.allowed[key] == nil, "\(key) refused")
          #expect(error.code == .failedPrecondition)
        }
      }
    }
  }

  @Test("price: unit x quantity x periods, commission floored, seller gets the rest; ONE_TIME is one period")
  func price() throws {
    let price = try OrderRules.price(
      unitPrice: MoneyMath.money("USD", 1_999), period: .month, quantity: 3, periods: 1, commissionBps: 500)
    #expect(price.amount == MoneyMath.money("USD", 5_997))
    #expect(price.commission == MoneyMath.money("USD", 299))
    #expect(price.sellerNet == MoneyMath.money("USD", 5_698))
    #expect(throws: DomainError.self) {
      try OrderRules.price(
        unitPrice: MoneyMath.money("USD", 1), period: .oneTime, quantity: 1, periods: 2, commissionBps: 500)
    }
    #expect(throws: DomainError.self) {
      try OrderRules.price(
        unitPrice: MoneyMath.money("USD", .max / 2), period: .year, quantity: UInt32.max, periods: 1, commissionBps: 0)
    }
  }

  @Test("the linked order: distributor buys A from the ISV at the wholesale price, paid with its parent")
  func linked() throws {
    let parent = Order.with {
      $0.id = "o1"
      $0.quantity = 3
      $0.periods = 2
      $0.price = .with {
        $0.billingPeriod = .month
        $0.commissionBps = 500
      }
      $0.scenario = .with {
        $0.scenario = .scenario3
        $0.isvID = "i"
        $0.distributorID = "d"
        $0.baseServiceID = "A"
        $0.baseVersionID = "A1"
      }
      $0.wholesale = .with {
        $0.wholesaleUnitPrice = MoneyMath.money("USD", 1_234)
        $0.wholesaleAmount = MoneyMath.money("USD", 1_234 * 3 * 2)
      }
    }
    let link = try OrderRules.linkedOrder(for: parent, id: "o2", baseProductID: "pA", now: 9)
    #expect(link.kind == .linked)
    #expect(link.status == .paid)
    #expect(
      link.buyer
        == .with {
          $0.role = .distributor; $0.accountID = "d"
        })
    #expect(
      link.seller
        == .with {
          $0.role = .isv; $0.accountID = "i"
        })
    #expect(link.serviceID == "A")
    #expect(link.price?.amount == MoneyMath.money("USD", 7_404))
    #expect(link.price?.commission == MoneyMath.money("USD", 370))
    #expect(link.parentOrderID == "o1")
  }

  @Test("backoff doubles from the first wait and stops at the cap")
  func backoff() {
    let waits = (1...8).map {
      OrderRules.backoff(afterAttempts: UInt32($0), initial: .milliseconds(100), cap: .seconds(5))
    }
    #expect(
      waits == [
        .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .milliseconds(1_600),
        .milliseconds(3_200), .seconds(5), .seconds(5),
      ])
    #expect(OrderRules.backoff(afterAttempts: 1_000, initial: .milliseconds(100), cap: .seconds(5)) == .seconds(5))
  }
}
