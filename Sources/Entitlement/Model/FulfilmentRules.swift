// Fulfilment through the provider (docs/events.md): which service's endpoint a fully managed
// instance's provider registered, which actions on an instance the provider is told of,
// the body of a call, and what an answer to `create` may carry. Pure.
import Foundation
public import NestDomain
public import NestProto

/// What a provider is asked to do with an instance.
public enum FulfilmentAction: String, CaseIterable, Sendable {
  case create, renew, suspend, resume, expire, release
  /// The plan or the quantity in effect changed: at once for a change that costs more (or any
  /// during a trial), otherwise at the renewal it waited for. The instance in the body has the
  /// new ones.
  case change
  /// The instance's last entry of `upgrades` (UPGRADING) says from and to which version.
  case upgrade, rollback
}

public enum FulfilmentRules {
  public typealias Instance = Nest_Entitlement_V1_ServiceInstance

  /// The service whose endpoint fulfils `instance`, and its provider: the owner of its cloud
  /// resources (the distributor's B in scenario 2, the ISV's A in scenarios 3 and 4 and
  /// direct sales). Nil for an instance the customer runs (private).
  public static func provider(of instance: Instance) -> (serviceID: String, party: Nest_Common_V1_Party)? {
    guard instance.accessMode == .logonURL, let owner = instance.resourceOwner else { return nil }
    switch owner.role {
    case .distributor: return (instance.serviceID, owner)
    case .isv: return (instance.baseServiceID.isEmpty ? instance.serviceID : instance.baseServiceID, owner)
    default: return nil
    }
  }

  /// What the provider is told of a change from `before` to `after`, with each call's
  /// idempotency key (the `webhook-id` the provider sees: the same change is the same key).
  public static func calls(before: Instance, after: Instance) -> [(action: FulfilmentAction, key: String)] {
    var calls: [(FulfilmentAction, String)] = []
    let step = after.history.count
    if after.expiresAtUnixMs > before.expiresAtUnixMs && before.expiresAtUnixMs != 0 && after.status != .released {
      calls.append((.renew, "\(after.id)/renew/\(after.expiresAtUnixMs)"))
    }
    // Keyed by the order that made it: the CHANGE order, or the RENEWAL order that applied a
    // pending change.
    if Self.sold(after) != Self.sold(before) && after.status != .released {
      calls.append((.change, "\(after.id)/change/\(after.subscription?.orderIds.last ?? "\(step)")"))
    }
    if after.status != before.status {
      let action: FulfilmentAction? =
        switch (before.status, after.status) {
        case (_, .suspended): .suspend
        case (.suspended, .deployed): .resume
        case (_, .expired): .expire
        case (_, .released): .release
        default: nil
        }
      if let action { calls.append((action, "\(after.id)/\(action.rawValue)/\(step)")) }
    }
    let started = Set(before.upgrades.map(\.id))
    for upgrade in after.upgrades where upgrade.status == .upgrading && !started.contains(upgrade.id) {
      let action: FulfilmentAction = upgrade.kind == .rollback ? .rollback : .upgrade
      calls.append((action, "\(after.id)/\(action.rawValue)/\(upgrade.id)"))
    }
    return calls
  }

  /// What a change of plan or quantity changes: the product, the plan and how many.
  private static func sold(_ instance: Instance) -> (product: String, plan: String, quantity: Int32) {
    (instance.subscription?.plan?.productID ?? "", instance.subscription?.plan?.planID ?? "", instance.quantity)
  }

  /// The key of an instance's `create` call.
  public static func createKey(_ instanceID: String) -> String { "\(instanceID)/create" }

  /// The JSON POSTed: {"action": ..., "instance": the instance as proto3 JSON, as its
  /// provider may read it}.
  public static func body(_ action: FulfilmentAction, instance: Instance, provider: Nest_Common_V1_Role) throws
    -> [UInt8]
  {
    var body = Array(#"{"action":"\#(action.rawValue)","instance":"#.utf8)
    body += try instance.redacted(forRole: provider.rawValue).jsonUTF8()
    body += Array("}".utf8)
    return body
  }

  /// The most an answer may be, and its facts.
  public static let answerLimit = 64 * 1024
  public static let maxFacts = 32

  /// What a provider's answer to `create` carries: {"logon_url": "https://...", "facts":
  /// {"name": "value", ...}}, both optional; an empty answer keeps the platform's logon URL.
  public static func answer(_ bytes: [UInt8]) throws(DomainError) -> (logonURL: String?, facts: [String: String]) {
    func refuse(_ why: String) -> DomainError { DomainError(.invalidArgument, "the provider's answer \(why)") }
    guard !bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) else { return (nil, [:]) }
    guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
      throw refuse("is not a JSON object")
    }
    var logonURL: String?
    if let value = object["logon_url"] {
      guard let text = value as? String, text.utf8.count <= 2048, let url = URLComponents(string: text),
        let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http", url.host?.isEmpty == false
      else { throw refuse("has a logon_url that is not an http(s) URL of at most 2048 bytes") }
      logonURL = text
    }
    var facts: [String: String] = [:]
    if let value = object["facts"] {
      guard let map = value as? [String: Any], map.count <= Self.maxFacts else {
        throw refuse("has facts that are not an object of at most \(Self.maxFacts) names")
      }
      for (name, value) in map {
        guard let text = value as? String, !name.isEmpty, name.utf8.count <= 64, text.utf8.count <= 1024 else {
          throw refuse("has a fact \"\(name.prefix(64))\" that is not a string of at most 1024 bytes named in 64")
        }
        facts[name] = text
      }
    }
    return (logonURL, facts)
  }
}
