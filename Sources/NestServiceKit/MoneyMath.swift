// Money arithmetic of DESIGN section 5: integers in minor units, overflow refused, commission
// floored. Shared by marketplace-order (prices) and settlement (postings).
public import NestProto
public import NestTransport

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

  /// Sums per currency, sorted by currency code.
  public static func totals(_ amounts: [Nest_Common_V1_Money]) -> [Nest_Common_V1_Money] {
    var sums: [String: Int64] = [:]
    for amount in amounts { sums[amount.currency, default: 0] += amount.amountMinor }
    return sums.keys.sorted().map { money($0, sums[$0]!) }
  }
}
