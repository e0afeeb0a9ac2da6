// DESIGN section 5: money is { ISO 4217 currency, int64 minor units }, never negative here.
public import NestProto
public import NestTransport

public enum MoneyRules {
  /// ISO 4217 shape (three upper-case letters) and no negative amount.
  public static func violations(_ money: Nest_Common_V1_Money?, field: String) -> [FieldViolation] {
    guard let money else { return [.init(field: field, description: "is required")] }
    var violations: [FieldViolation] = []
    if money.currency.count != 3 || !money.currency.allSatisfy({ $0.isASCII && $0.isUppercase }) {
      violations.append(.init(field: "\(field).currency", description: "must be an ISO 4217 code such as USD"))
    }
    if money.amountMinor < 0 {
      violations.append(.init(field: "\(field).amount_minor", description: "must not be negative"))
    }
    return violations
  }
}
