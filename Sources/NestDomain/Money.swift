// Money (nest.common.v1.Money): an ISO 4217 currency and an int64 amount in minor units. No
// floating point anywhere; overflow is refused; commission is floored. The rules the
// marketplace's prices, the ledger's postings and what people read share.
public import NestProto

public enum MoneyMath {
  /// `unit * quantity * periods`, or nil if it does not fit in int64.
  public static func amount(unit: Int64, quantity: Int64, periods: Int64) -> Int64? {
    let (partial, overflow1) = unit.multipliedReportingOverflow(by: quantity)
    let (total, overflow2) = partial.multipliedReportingOverflow(by: periods)
    return overflow1 || overflow2 ? nil : total
  }

  /// `floor(amount * bps / 10000)` for a non-negative amount and bps <= 10000, without
  /// overflowing for any int64 amount.
  public static func commission(_ amount: Int64, bps: UInt32) -> Int64 {
    precondition(amount >= 0 && bps <= 10_000)
    let bps = Int64(bps)
    return (amount / 10_000) * bps + (amount % 10_000) * bps / 10_000
  }

  public static func money(_ currency: String, _ amount: Int64) -> Nest_Common_V1_Money {
    .with {
      $0.currency = currency
      $0.amountMinor = amount
    }
  }

  /// What a per-period difference `delta` (>= 0) comes to over `remaining` ms (clamped at 0)
  /// of periods `period` ms long: `floor(delta * remaining / period)`, exact for any int64
  /// values (128-bit intermediates); nil when the result does not fit in int64. A period of
  /// 0 comes to nothing.
  public static func prorate(_ delta: Int64, remaining: Int64, period: Int64) -> Int64? {
    precondition(delta >= 0)
    guard period > 0 else { return 0 }
    let left = max(remaining, 0)
    let (wholePeriods, rest) = left.quotientAndRemainder(dividingBy: period)
    let (whole, overflow) = delta.multipliedReportingOverflow(by: wholePeriods)
    let part = period.dividingFullWidth(delta.multipliedFullWidth(by: rest)).quotient
    let (total, overflow2) = whole.addingReportingOverflow(part)
    return overflow || overflow2 ? nil : total
  }

  /// Sums per currency, sorted by currency code.
  public static func totals(_ amounts: [Nest_Common_V1_Money]) -> [Nest_Common_V1_Money] {
    var sums: [String: Int64] = [:]
    for amount in amounts { sums[amount.currency, default: 0] += amount.amountMinor }
    return sums.keys.sorted().map { money($0, sums[$0]!) }
  }
}

public enum MoneyRules {
  /// ISO 4217 shape (three upper-case letters) and no negative amount.
  public static func violations(_ money: Nest_Common_V1_Money?, field: String) -> [DomainError.Violation] {
    guard let money else { return [.init(field: field, description: "is required")] }
    var violations: [DomainError.Violation] = []
    if money.currency.count != 3 || !money.currency.allSatisfy({ $0.isASCII && $0.isUppercase }) {
      violations.append(.init(field: "\(field).currency", description: "must be an ISO 4217 code such as USD"))
    }
    if money.amountMinor < 0 {
      violations.append(.init(field: "\(field).amount_minor", description: "must not be negative"))
    }
    return violations
  }
}

/// Amounts as people read them: `479.94 USD`, `1200 JPY`, `-0.05 EUR`: the currency's minor
/// units (ISO 4217 exponent) after the decimal point.
public enum MoneyFormat {
  /// Currencies whose minor unit is not a hundredth (ISO 4217); every other has 2.
  static let exponents: [String: Int] = [
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0,
    "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
  ]

  /// Digits after the decimal point for `currency`.
  public static func exponent(_ currency: String) -> Int { self.exponents[currency] ?? 2 }

  public static func string(_ money: Nest_Common_V1_Money) -> String {
    self.string(money.amountMinor, money.currency)
  }

  public static func string(_ amountMinor: Int64, _ currency: String) -> String {
    let exponent = self.exponent(currency)
    let negative = amountMinor < 0
    // The magnitude as digits, without overflowing on Int64.min.
    var digits = String(amountMinor.magnitude)
    if exponent > 0 {
      if digits.count <= exponent { digits = String(repeating: "0", count: exponent - digits.count + 1) + digits }
      digits.insert(".", at: digits.index(digits.endIndex, offsetBy: -exponent))
    }
    return "\(negative ? "-" : "")\(digits) \(currency)"
  }
}

extension Nest_Entitlement_V1_DistributionTerms {
  /// What the distributor owes per unit for one `period` of a sale: that period's own
  /// wholesale price, else `wholesale_price`.
  public func wholesaleUnitPrice(for period: Nest_Common_V1_BillingPeriod) -> Nest_Common_V1_Money? {
    self.wholesalePrices.first { $0.billingPeriod == period }?.price ?? self.wholesalePrice
  }
}

extension Nest_Order_V1_Order {
  /// Whether paying the order records a sale in settlement: not for a free trial, nor for a
  /// change that costs nothing (a downgrade). What marketplace-order queues and what
  /// Reconcile expects both follow it.
  public var recordsSale: Bool {
    !(self.trial || (self.kind == .change && (self.price?.amount?.amountMinor ?? 0) == 0))
  }
}

/// How long billing periods are: a MONTH is 30 days and a YEAR 365 days; ONE_TIME has none.
public enum BillingPeriods {
  public static let dayMs: Int64 = 24 * 3600 * 1000

  public static func milliseconds(_ period: Nest_Common_V1_BillingPeriod) -> Int64? {
    switch period {
    case .month: 30 * dayMs
    case .year: 365 * dayMs
    default: nil
    }
  }
}
