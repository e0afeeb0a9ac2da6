import Testing

@testable import NestProtoCompiler

@Suite("Swift naming")
struct SwiftNamingTests {
  @Test("proto names become the Swift names swift-protobuf users expect")
  func names() {
    #expect(SwiftNaming.typePrefix(package: "nest.catalog.v1") == "Nest_Catalog_V1_")
    #expect(SwiftNaming.typePrefix(package: "foo_bar.v2") == "FooBar_V2_")
    #expect(SwiftNaming.lowerCamel("unit_price") == "unitPrice")
    #expect(SwiftNaming.lowerCamel("call_id") == "callID")
    #expect(SwiftNaming.lowerCamel("id") == "id")
    #expect(SwiftNaming.lowerCamel("checksum_sha256") == "checksumSha256")
    #expect(SwiftNaming.upperSnake("DistributionAuthorizationStatus") == "DISTRIBUTION_AUTHORIZATION_STATUS")
    #expect(SwiftNaming.enumCase("SERVICE_TYPE_FULLY_MANAGED", enumName: "ServiceType") == "fullyManaged")
    #expect(SwiftNaming.enumCase("SCENARIO_3", enumName: "Scenario") == "scenario3")
    #expect(SwiftNaming.enumCase("NOT_SERVING", enumName: "ServingStatus") == "notServing")
    #expect(SwiftNaming.escaped("private") == "`private`")
    #expect(SwiftNaming.escaped("Type") == "`Type`")
  }
}
