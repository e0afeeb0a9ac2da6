// Status names as history entries, messages and metrics spell them, from the cache proto enums
// are spelled through and from the general path other enums take.
import NestDomain
import NestProto
import Testing

@Suite("Status names")
struct StatusNameTests {
  @Test("a proto enum's case is spelled as its proto name, the same the first time and after")
  func protoEnums() {
    for _ in 0..<2 {
      #expect(statusName(Nest_Entitlement_V1_DeploymentStatus.deployFailed) == "DEPLOY_FAILED")
      #expect(statusName(Nest_Order_V1_OrderStatus.paid) == "PAID")
      #expect(statusName(Nest_Order_V1_DeliveryKind.recordSale) == "RECORD_SALE")
    }
  }

  @Test("cases of different enums with one raw value keep their own names; unknown values keep theirs")
  func sameRawValue() {
    let paid = Nest_Order_V1_OrderStatus.paid
    let deployment = Nest_Entitlement_V1_DeploymentStatus(rawValue: paid.rawValue)
    #expect(statusName(deployment) != statusName(paid))
    #expect(statusName(deployment) == statusName(deployment as Any))
    #expect(statusName(Nest_Order_V1_OrderStatus(rawValue: 90)) == "UNRECOGNIZED(90)")
    #expect(statusName(Nest_Order_V1_OrderStatus(rawValue: 91)) == "UNRECOGNIZED(91)")
  }

  @Test("an enum that is not a proto enum is spelled the same way")
  func otherEnums() {
    enum Phase { case waitingForPayment }
    #expect(statusName(Phase.waitingForPayment) == "WAITING_FOR_PAYMENT")
  }
}
