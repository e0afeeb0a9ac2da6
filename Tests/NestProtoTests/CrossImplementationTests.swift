// One message per proto file, built by hand in Swift and written by hand as protoc text:
// protoc must read the Swift bytes as exactly that text, and Swift must read protoc's
// encoding of the text as exactly that value. Unlike the golden round trips, this pins
// which Swift property is which proto field.
import Foundation
import NestProto
import NestProtoRuntime
import NestProtoTesting
import Testing

struct HandWrittenCase: CustomTestStringConvertible, Sendable {
  let value: any NestMessage
  let text: String
  let root: String
  var testDescription: String { type(of: self.value).protoMessageName }

  static let all: [HandWrittenCase] = [
    // nest/wire/v1/frame.proto
    HandWrittenCase(
      value: Nest_Wire_V1_Frame.with {
        $0.callID = 42
        $0.kind = .request
        $0.method = "/nest.catalog.v1.CatalogService/GetService"
        $0.timeoutMs = 1500
        $0.metadata = [
          .with {
            $0.key = "authorization"; $0.value = .text("Bearer abc")
          },
          .with {
            $0.key = "trace-bin"; $0.value = .binary([1, 2])
          },
        ]
        $0.payload = [0x0a, 0x03, 0x73, 0x76, 0x63]
        $0.status = .with {
          $0.code = 3;
          $0.violations = [
            .with {
              $0.field = "name"; $0.description = "empty"
            }
          ]
        }
        $0.lastCallID = UInt64.max
      },
      text: """
        call_id: 42
        kind: REQUEST
        method: "/nest.catalog.v1.CatalogService/GetService"
        timeout_ms: 1500
        metadata {
          key: "authorization"
          text: "Bearer abc"
        }
        metadata {
          key: "trace-bin"
          binary: "\\001\\002"
        }
        payload: "\\n\\003svc"
        status {
          code: 3
          violations {
            field: "name"
            description: "empty"
          }
        }
        last_call_id: 18446744073709551615

        """,
      root: "proto"),
    // nest/health/v1/health.proto
    HandWrittenCase(
      value: Nest_Health_V1_HealthCheckResponse.with { $0.status = .notServing },
      text: "status: NOT_SERVING\n",
      root: "proto"),
    // nest/common/v1/common.proto
    HandWrittenCase(
      value: Nest_Common_V1_ScenarioResolution.with {
        $0.serviceID = "svc-b"
        $0.scenario = .scenario3
        $0.settlementMode = .online
        $0.resourceOwner = .with {
          $0.role = .isv; $0.accountID = "isv-1"
        }
        $0.accessMode = .logonURL
        $0.baseServiceType = .fullyManaged
        $0.baseListed = true
      },
      text: """
        service_id: "svc-b"
        scenario: SCENARIO_3
        settlement_mode: SETTLEMENT_MODE_ONLINE
        resource_owner {
          role: ROLE_ISV
          account_id: "isv-1"
        }
        access_mode: ACCESS_MODE_LOGON_URL
        base_service_type: SERVICE_TYPE_FULLY_MANAGED
        base_listed: true

        """,
      root: "proto"),
    // nest/catalog/v1/catalog.proto
    HandWrittenCase(
      value: Nest_Catalog_V1_Product.with {
        $0.id = "prod-1"
        $0.status = .listed
        $0.plans = [
          .with {
            $0.planID = "monthly"
            $0.name = "Mensuel é"
            $0.billingPeriod = .month
            $0.unitPrice = .with {
              $0.currency = "EUR"; $0.amountMinor = 1999
            }
          }
        ]
        $0.createdAtUnixMs = 1_764_000_000_000
      },
      text: """
        id: "prod-1"
        status: PRODUCT_STATUS_LISTED
        plans {
          plan_id: "monthly"
          name: "Mensuel \\303\\251"
          billing_period: BILLING_PERIOD_MONTH
          unit_price {
            currency: "EUR"
            amount_minor: 1999
          }
        }
        created_at_unix_ms: 1764000000000

        """,
      root: "proto"),
    // nest/entitlement/v1/entitlement.proto
    HandWrittenCase(
      value: Nest_Entitlement_V1_ServiceInstance.with {
        $0.id = "inst-1"
        $0.scenario = .scenario2
        $0.feePayer = .with {
          $0.role = .distributor; $0.accountID = "dist-1"
        }
        $0.status = .deployed
        $0.access = .logonURL("https://console.example/i/1")
        $0.parameters = ["zone": "b", "size": "large"]
        $0.quantity = -1
      },
      text: """
        id: "inst-1"
        scenario: SCENARIO_2
        fee_payer {
          role: ROLE_DISTRIBUTOR
          account_id: "dist-1"
        }
        status: DEPLOYMENT_STATUS_DEPLOYED
        logon_url: "https://console.example/i/1"
        parameters {
          key: "size"
          value: "large"
        }
        parameters {
          key: "zone"
          value: "b"
        }
        quantity: -1

        """,
      root: "proto"),
    // nest/order/v1/order.proto
    HandWrittenCase(
      value: Nest_Order_V1_Order.with {
        $0.id = "ord-1"
        $0.kind = .linked
        $0.quantity = 3
        $0.periods = 12
        $0.price = .with {
          $0.amount = .with {
            $0.currency = "USD"; $0.amountMinor = Int64.min
          }
          $0.commissionBps = 500
        }
        $0.linkedOrderIds = ["ord-2", "ord-3"]
      },
      text: """
        id: "ord-1"
        kind: ORDER_KIND_LINKED
        quantity: 3
        periods: 12
        price {
          amount {
            currency: "USD"
            amount_minor: -9223372036854775808
          }
          commission_bps: 500
        }
        linked_order_ids: "ord-2"
        linked_order_ids: "ord-3"

        """,
      root: "proto"),
    // nest/settlement/v1/settlement.proto
    HandWrittenCase(
      value: Nest_Settlement_V1_LedgerTransaction.with {
        $0.id = "tx-1"
        $0.kind = .sale
        $0.source = .orderID("ord-1")
        $0.postings = [
          .with {
            $0.account = .with {
              $0.kind = .customer; $0.accountID = "cust-1"
            }
            $0.amount = .with {
              $0.currency = "USD"; $0.amountMinor = -10000
            }
          },
          .with {
            $0.account = .with { $0.kind = .platform }
            $0.amount = .with {
              $0.currency = "USD"; $0.amountMinor = 500
            }
          },
        ]
      },
      text: """
        id: "tx-1"
        kind: TRANSACTION_KIND_SALE
        order_id: "ord-1"
        postings {
          account {
            kind: ACCOUNT_KIND_CUSTOMER
            account_id: "cust-1"
          }
          amount {
            currency: "USD"
            amount_minor: -10000
          }
        }
        postings {
          account {
            kind: ACCOUNT_KIND_PLATFORM
          }
          amount {
            currency: "USD"
            amount_minor: 500
          }
        }

        """,
      root: "proto"),
    // Tests/Protos/nest/testing/v1/testing.proto: the scalar types protoc-c stores oddly.
    HandWrittenCase(
      value: Nest_Testing_V1_Scalars.with {
        $0.fSint32 = Int32.min
        $0.fSint64 = -1
        $0.fBool = true
        $0.fFloat = -0.5
        $0.fBytes = [0, 255]
        $0.rBool = [true, false, true]
        $0.rShade = [.dark, .unrecognized(7)]
        $0.mBool = [true: "yes", false: "no"]
      },
      text: """
        f_sint32: -2147483648
        f_sint64: -1
        f_float: -0.5
        f_bool: true
        f_bytes: "\\000\\377"
        r_bool: true
        r_bool: false
        r_bool: true
        r_shade: SHADE_DARK
        r_shade: 7
        m_bool {
          key: false
          value: "no"
        }
        m_bool {
          key: true
          value: "yes"
        }

        """,
      root: "Tests/Protos"),
  ]
}

@Suite("Cross-implementation: Swift and protoc agree")
struct CrossImplementationTests {
  @Test("protoc --decode reads the Swift bytes as the expected text", arguments: HandWrittenCase.all)
  func protocReadsSwift(_ testCase: HandWrittenCase) throws {
    let bytes = try testCase.value.serializedBytes()
    let name = type(of: testCase.value).protoMessageName
    #expect(try protocDecode(name, bytes, root: Repository.path(testCase.root)) == testCase.text)
  }

  @Test("Swift reads protoc --encode of the text as the expected value", arguments: HandWrittenCase.all)
  func swiftReadsProtoc(_ testCase: HandWrittenCase) throws {
    try Self.check(testCase.value, testCase)
  }

  static func check<M: NestMessage>(_ expected: M, _ testCase: HandWrittenCase) throws {
    let bytes = try protocEncode(M.protoMessageName, testCase.text, root: Repository.path(testCase.root))
    #expect(try M(serializedBytes: bytes) == expected)
  }
}
