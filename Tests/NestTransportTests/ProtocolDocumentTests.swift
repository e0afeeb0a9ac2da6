// docs/protocol.md's hex examples are what the encoder writes: the document stays true.
import Foundation
import NestProto
import NestProtoTesting
import NestTransport
import Testing

@Suite("docs/protocol.md", .timeLimit(.minutes(3)))
struct ProtocolDocumentTests {
  /// The hex block after each `<!-- frame: NAME -->` marker.
  static func examples() throws -> [String: [UInt8]] {
    let text = try String(contentsOf: Repository.path("docs/protocol.md"), encoding: .utf8)
    var examples: [String: [UInt8]] = [:]
    var current: String? = nil
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
      if line.hasPrefix("<!-- frame: "), line.hasSuffix(" -->") {
        current = String(line.dropFirst("<!-- frame: ".count).dropLast(" -->".count))
        examples[current!] = []
      } else if let name = current, line.hasPrefix("    ") {
        examples[name]! += line.split(separator: " ").map { UInt8($0, radix: 16)! }
      } else if !line.isEmpty {
        current = nil
      }
    }
    return examples
  }

  static func framed(_ frame: Nest_Wire_V1_Frame) throws -> [UInt8] {
    try frame.lengthPrefixed()
  }

  @Test("the HELLO, REQUEST and RESPONSE examples are byte for byte what the encoder writes")
  func examples() throws {
    let examples = try Self.examples()
    #expect(Set(examples.keys) == ["hello", "request", "response"])
    #expect(examples["hello"] == (try Self.framed(.hello(peer: "nestctl/0.1.0", maxFrameBytes: 4 << 20))))
    let request = Nest_Wire_V1_Frame.with {
      $0.callID = 1
      $0.kind = .request
      $0.method = "/nest.health.v1.Health/Check"
      $0.timeoutMs = 1000
      $0.metadata = [
        .with {
          $0.key = "x-request-id"; $0.value = .text("r-1")
        }
      ]
      $0.payload = try! Nest_Health_V1_HealthCheckRequest.with { $0.service = "nest.catalog.v1.CatalogService" }
        .serializedBytes()
    }
    #expect(examples["request"] == (try Self.framed(request)))
    let response = Nest_Wire_V1_Frame.with {
      $0.callID = 1
      $0.kind = .response
      $0.payload = try! Nest_Health_V1_HealthCheckResponse.with { $0.status = .serving }.serializedBytes()
      $0.status = .init()
    }
    #expect(examples["response"] == (try Self.framed(response)))
  }
}
