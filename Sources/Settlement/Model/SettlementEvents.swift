// What partners are told of offline settlement: an obligation recorded, settled or
// cancelled; a statement issued, settled or disputed; to the pair's ISV and distributor, the
// parties that may read them. Pure.
public import NestDomain
public import NestProto

public enum SettlementEvents {
  static func pair(isvID: String, distributorID: String) -> [Nest_Common_V1_Party] {
    Nest_Common_V1_Party.of(.isv, isvID) + Nest_Common_V1_Party.of(.distributor, distributorID)
  }

  public static func drafts(_ obligation: Obligation, entered: [Nest_Common_V1_StatusChange]) -> [EventDraft] {
    EventDraft.entered(
      entered, subject: "obligation/\(obligation.id)",
      parties: pair(isvID: obligation.isvID, distributorID: obligation.distributorID), payload: .obligation(obligation)
    ) {
      switch $0 {
      case "OPEN": "obligation.recorded"
      case "SETTLED": "obligation.settled"
      case "CANCELLED": "obligation.cancelled"
      default: nil
      }
    }
  }

  public static func drafts(_ statement: Statement, entered: [Nest_Common_V1_StatusChange]) -> [EventDraft] {
    EventDraft.entered(
      entered, subject: "statement/\(statement.id)",
      parties: pair(isvID: statement.isvID, distributorID: statement.distributorID), payload: .statement(statement)
    ) {
      switch $0 {
      case "ISSUED": "statement.issued"
      case "SETTLED": "statement.settled"
      case "DISPUTED": "statement.disputed"
      default: nil
      }
    }
  }
}
