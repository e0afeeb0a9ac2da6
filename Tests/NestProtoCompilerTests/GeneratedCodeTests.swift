// The committed generated code is what the generators make from the committed protos now.
import Foundation
import NestProtoTesting
import Testing

@Suite("Generated code is fresh")
struct GeneratedCodeTests {
  static let generatedFolders = [
    "Sources/CNestProto", "Sources/CProtocPlugin", "Sources/NestProto/Generated",
    "Tests/Support/CNestProtoTesting", "Tests/Support/NestProtoTesting/Generated",
  ]

  @Test("regenerating C and Swift into a temporary folder changes nothing")
  func notStale() throws {
    let plugin = Repository.productsDirectory.appendingPathComponent("protoc-gen-nest-swift")
    #expect(FileManager.default.isExecutableFile(atPath: plugin.path), "build protoc-gen-nest-swift first")
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("nest-generate-\(UUID())")
    defer { try? FileManager.default.removeItem(at: output) }
    let generate = try run([
      Repository.path("scripts/generate-proto").path, "--out", output.path, "--plugin", plugin.path,
    ])
    #expect(generate.status == 0, "generate-proto failed: \(generate.stderr)")
    for folder in Self.generatedFolders {
      let diff = try run([
        "diff", "-r", Repository.path(folder).path, output.appendingPathComponent(folder).path,
      ])
      #expect(
        diff.status == 0,
        "\(folder) is stale: run scripts/generate-proto and commit the result\n\(diff.stdoutText.prefix(2000))")
    }
  }
}
