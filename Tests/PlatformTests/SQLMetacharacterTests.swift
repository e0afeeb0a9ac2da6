// SQL only through bound parameters: SQL metacharacters in the account ids (token subjects),
// the client tokens and the free-text fields of every mutating RPC are stored and returned
// verbatim, and every table is still there afterwards.
import Foundation
import GRPCCore
import NestProto
import NestTestKit
import Testing

/// Quotes, comment and statement separators, LIKE wildcards, a backslash, and non-ASCII.
let evil = "Robert'); DROP TABLE services; -- \" % _ \\ /* */ ' OR '1'='1 ✓"

@Suite("SQL metacharacters", .serialized, .timeLimit(.minutes(2)))
struct SQLMetacharacterTests {
  @Test("through every string field of every mutating RPC and back, verbatim")
  func verbatim() async throws {
    let platform = try await NestTestPlatform.start()
    let isv = "isv \(evil)"
    let distributor = "dist \(evil)"
    let customer = "cust \(evil)"
    func token(_ method: String) -> String { "\(method) \(evil)" }
    let money = { (amount: Int64) in
      Nest_Common_V1_Money.with {
        $0.currency = "USD"; $0.amountMinor = amount
      }
    }
    let parameters = [
      Nest_Catalog_V1_ParameterSet.with {
        $0.name = "set \(evil)"; $0.description = evil; $0.parameters = ["k \(evil)": "v \(evil)"]
      }
    ]

    // Catalog: A, a second version, B on A with additions, listed.
    let a = try await platform.catalog(as: .isv, isv) { catalog in
      let created = try await catalog.createService(
        .with {
          $0.clientToken = token("CreateService")
          $0.name = "A \(evil)"
          $0.description = evil
          $0.type = .private
          $0.versionLabel = "v \(evil)"
          $0.deploymentPackage = .with {
            $0.artifactRef = "oci://x/\(evil)"
            $0.checksumSha256 = String(repeating: "ab", count: 32)
            $0.template = evil
          }
          $0.parameterSets = parameters
        })
      _ = try await catalog.createServiceVersion(
        .with {
          $0.clientToken = token("CreateServiceVersion")
          $0.serviceID = created.service!.id
          $0.label = "v2 \(evil)"
          $0.deploymentPackage = .with {
            $0.artifactRef = "oci://x/2/\(evil)"
            $0.checksumSha256 = String(repeating: "cd", count: 32)
          }
          $0.parameterSets = parameters
        })
      _ = try await catalog.publishService(
        .with {
          $0.clientToken = token("PublishService")
          $0.serviceID = created.service!.id
          $0.versionID = created.version!.id
        })
      _ = try await catalog.enableDistribution(
        .with {
          $0.clientToken = token("EnableDistribution")
          $0.serviceID = created.service!.id
        })
      return try await catalog.getService(.with { $0.serviceID = created.service!.id })
    }
    #expect(a.service?.name == "A \(evil)")
    #expect(a.service?.description == evil)
    #expect(a.service?.ownerID == isv)
    #expect(a.versions.map(\.label) == ["v \(evil)", "v2 \(evil)"])
    #expect(a.versions.first?.deploymentPackage?.template == evil)
    #expect(a.versions.first?.parameterSets == parameters)

    // Entitlement: apply with a message, reject with a reason, apply again, approve.
    let rejected = try await platform.entitlement(as: .distributor, distributor) {
      try await $0.applyForDistribution(
        .with {
          $0.clientToken = token("ApplyForDistribution")
          $0.baseServiceID = a.service!.id
          $0.message = evil
        }
      ).authorization!
    }
    _ = try await platform.entitlement(as: .isv, isv) {
      try await $0.rejectDistribution(
        .with {
          $0.clientToken = token("RejectDistribution")
          $0.authorizationID = rejected.id
          $0.reason = "no \(evil)"
        })
    }
    let authorization = try await platform.entitlement(as: .isv, isv) {
      try await $0.grantDistribution(
        .with {
          $0.clientToken = token("GrantDistribution")
          $0.baseServiceID = a.service!.id
          $0.distributorID = distributor
          $0.terms = .with { $0.wholesalePrice = money(1_000) }
        }
      ).authorization!
    }
    let stored = try await platform.entitlement(as: .operator, "op") {
      try await $0.getDistributionAuthorization(.with { $0.authorizationID = rejected.id }).authorization!
    }
    #expect(stored.applicationMessage == evil)
    #expect(stored.statusReason == "no \(evil)")
    #expect(stored.distributorID == distributor)
    #expect(authorization.isvID == isv)

    let b = try await platform.catalog(as: .distributor, distributor) { catalog in
      let created = try await catalog.createDerivedService(
        .with {
          $0.clientToken = token("CreateDerivedService")
          $0.baseServiceID = a.service!.id
          $0.name = "B \(evil)"
          $0.description = evil
          $0.type = .fullyManaged
          $0.deploymentAdditions = [
            .with {
              $0.name = "add \(evil)"
              $0.description = evil
              $0.deploymentPackage = .with {
                $0.artifactRef = "oci://y/\(evil)"
                $0.checksumSha256 = String(repeating: "ef", count: 32)
              }
            }
          ]
          $0.parameterSets = parameters
        })
      _ = try await catalog.publishService(
        .with {
          $0.clientToken = token("PublishService")
          $0.serviceID = created.service!.id
          $0.versionID = created.version!.id
        })
      let product = try await catalog.listOnMarketplace(
        .with {
          $0.clientToken = token("ListOnMarketplace")
          $0.serviceID = created.service!.id
          $0.plans = [
            .with {
              $0.planID = "plan \(evil)"
              $0.name = evil
              $0.billingPeriod = .month
              $0.unitPrice = money(2_000)
            }
          ]
        }
      ).product!
      return (try await catalog.getService(.with { $0.serviceID = created.service!.id }), product)
    }
    #expect(b.0.versions.first?.deploymentAdditions.first?.name == "add \(evil)")
    #expect(b.1.plans.first?.planID == "plan \(evil)")

    // An order with labels, paid with a reference; another cancelled with a reason.
    let order = try await platform.orders(as: .customer, customer) { orders in
      let created = try await orders.createOrder(
        .with {
          $0.clientToken = token("CreateOrder")
          $0.productID = b.1.id
          $0.planID = "plan \(evil)"
          $0.quantity = 1
          $0.periods = 1
          $0.parameterSetName = "set \(evil)"
          $0.labels = ["po \(evil.prefix(20))": evil]
        }
      ).order!
      _ = try await orders.payOrder(
        .with {
          $0.clientToken = token("PayOrder")
          $0.orderID = created.id
          $0.paymentReference = "psp \(evil)"
        })
      let other = try await orders.createOrder(
        .with {
          $0.productID = b.1.id
          $0.planID = "plan \(evil)"
          $0.quantity = 1
          $0.periods = 1
        }
      ).order!
      let cancelled = try await orders.cancelOrder(
        .with {
          $0.clientToken = token("CancelOrder")
          $0.orderID = other.id
          $0.reason = "changed \(evil)"
        }
      ).order!
      #expect(cancelled.reason == "changed \(evil)")
      return created
    }
    var fulfilled = Nest_Order_V1_Order()
    let done = try await eventually {
      fulfilled = try await platform.orders(as: .customer, customer) {
        try await $0.getOrder(.with { $0.orderID = order.id }).order!
      }
      return fulfilled.status == .fulfilled && fulfilled.delivery?.pending == 0
    }
    #expect(done)
    #expect(fulfilled.labels == ["po \(evil.prefix(20))": evil])
    #expect(fulfilled.paymentReference == "psp \(evil)")
    #expect(fulfilled.buyer?.accountID == customer)

    // The instance: its parameters; operations on it with reasons; a permission request.
    let instance = try await platform.entitlement(as: .customer, customer) {
      try await $0.getServiceInstance(.with { $0.key = .orderID(order.id) }).instance!
    }
    #expect(instance.parameterSetName == "set \(evil)")
    #expect(instance.parameters == ["k \(evil)": "v \(evil)"])
    let asked = try await platform.entitlement(as: .customer, customer) {
      try await $0.requestResourcePermission(
        .with {
          $0.clientToken = token("RequestResourcePermission")
          $0.instanceID = instance.id
          $0.operation = "op \(evil)".prefix(200).description
          $0.reason = evil
          $0.requestedDurationSeconds = 60
        }
      ).request!
    }
    let decided = try await platform.entitlement(as: .distributor, distributor) { entitlement in
      let decided = try await entitlement.decidePermissionRequest(
        .with {
          $0.clientToken = token("DecidePermissionRequest")
          $0.requestID = asked.id
          $0.decision = .deny
          $0.reason = "deny \(evil)"
        }
      ).request!
      _ = try await entitlement.suspendServiceInstance(
        .with {
          $0.clientToken = token("SuspendServiceInstance")
          $0.instanceID = instance.id
          $0.reason = "s \(evil)"
        })
      _ = try await entitlement.resumeServiceInstance(
        .with {
          $0.clientToken = token("ResumeServiceInstance")
          $0.instanceID = instance.id
          $0.reason = "r \(evil)"
        })
      return decided
    }
    // Renewal is marketplace-order's (a paid renewal order).
    _ = try await platform.entitlement(as: .service, "marketplace-order") {
      try await $0.renewServiceInstance(
        .with {
          $0.clientToken = token("RenewServiceInstance")
          $0.instanceID = instance.id
          $0.renewal = .periods(1)
        })
    }
    #expect(decided.decisionReason == "deny \(evil)")
    let listed = try await platform.entitlement(as: .customer, customer) {
      try await $0.listPermissionRequests(.init()).requests
    }
    #expect(listed.map(\.operation) == ["op \(evil)".prefix(200).description])
    let history = try await platform.entitlement(as: .customer, customer) {
      try await $0.getServiceInstance(.with { $0.key = .instanceID(instance.id) }).instance!.history.map(\.reason)
    }
    #expect(history.contains("s \(evil)") && history.contains("r \(evil)"))

    // Settlement: usage with metacharacters, a statement confirmed with a reference and
    // another disputed with a reason, then the refund.
    let usage = try await platform.settlement(as: .distributor, distributor) {
      try await $0.recordUsage(
        .with {
          $0.clientToken = token("RecordUsage")
          $0.records = [
            .with {
              $0.recordID = "rec \(evil)"
              $0.instanceID = instance.id
              $0.meteredItem = "item \(evil)"
              $0.unit = "unit \(evil)"
              $0.quantity = 1
              $0.cost = money(5)
              $0.recordedAtUnixMs = 1
              $0.attributes = ["a \(evil.prefix(20))": evil]
            }
          ]
        }
      ).results
    }
    #expect(usage.map(\.result) == [.accepted], "\(usage.map(\.message))")
    let statement = try await platform.settlement(as: .isv, isv) { settlement in
      let issued = try await settlement.issueStatement(
        .with {
          $0.clientToken = token("IssueStatement")
          $0.distributorID = distributor
          $0.periodEndUnixMs = Int64(Date().timeIntervalSince1970 * 1000)
        }
      ).statement!
      return try await settlement.confirmStatementSettled(
        .with {
          $0.clientToken = token("ConfirmStatementSettled")
          $0.statementID = issued.id
          $0.externalReference = "bank \(evil)".prefix(256).description
        }
      ).statement!
    }
    #expect(statement.externalReference == "bank \(evil)".prefix(256).description)
    #expect(statement.distributorID == distributor)
    _ = try await platform.orders(as: .distributor, distributor) {
      try await $0.refundOrder(
        .with {
          $0.clientToken = token("RefundOrder")
          $0.orderID = order.id
          $0.reason = "refund \(evil)"
        })
    }
    let refunded = try await eventually {
      try await platform.orders(as: .customer, customer) {
        try await $0.getOrder(.with { $0.orderID = order.id }).order!
      }.delivery?.pending == 0
    }
    #expect(refunded)
    let credit = try await platform.settlement(as: .distributor, distributor) { settlement in
      let issued = try await settlement.issueStatement(
        .with {
          $0.clientToken = token("IssueStatement")
          $0.isvID = isv
          $0.periodEndUnixMs = Int64(Date().timeIntervalSince1970 * 1000)
        }
      ).statement!
      return try await settlement.disputeStatement(
        .with {
          $0.clientToken = token("DisputeStatement")
          $0.statementID = issued.id
          $0.reason = "dispute \(evil)"
        }
      ).statement!
    }
    #expect(credit.disputeReason == "dispute \(evil)")
    let final = try await platform.orders(as: .customer, customer) {
      try await $0.getOrder(.with { $0.orderID = order.id }).order!
    }
    #expect(final.reason == "refund \(evil)")

    // Revoke, take offline, delist, disable: and every table still answers.
    _ = try await platform.entitlement(as: .isv, isv) {
      try await $0.revokeDistribution(
        .with {
          $0.clientToken = token("RevokeDistribution")
          $0.authorizationID = authorization.id
          $0.reason = "revoke \(evil)"
        })
    }
    _ = try await platform.catalog(as: .distributor, distributor) { catalog in
      _ = try await catalog.delistFromMarketplace(
        .with {
          $0.clientToken = token("DelistFromMarketplace"); $0.productID = b.1.id
        })
      _ = try await catalog.takeServiceOffline(
        .with {
          $0.clientToken = token("TakeServiceOffline"); $0.serviceID = b.0.service!.id
        })
    }
    _ = try await platform.catalog(as: .isv, isv) {
      try await $0.disableDistribution(
        .with {
          $0.clientToken = token("DisableDistribution"); $0.serviceID = a.service!.id
        })
    }
    let services = try await platform.catalog(as: .operator, "op") { try await $0.listServices(.init()).services }
    #expect(services.count == 2)
    let reconcile = try await platform.settlement(as: .operator, "op") {
      try await $0.reconcile(.with { $0.checkOrders = true })
    }
    #expect(reconcile.ok, "\(reconcile.discrepancies)")
    await platform.stop()
  }
}
