// Every message type of proto/ (and of the test schemas) against golden files written by
// an independent implementation (scripts/generate-golden: Python's protobuf runtime), and
// against protoc itself.
import Foundation
import NestProto
import NestProtoRuntime
import NestProtoTesting
import Testing

struct GoldenSample: CustomTestStringConvertible, Sendable {
  let name: String
  let messageName: String
  let binary: [UInt8]
  let text: String
  let type: any NestMessage.Type
  /// The proto root whose files define the message, for protoc.
  let protoRoot: URL

  var testDescription: String { self.name }

  static let all: [GoldenSample] = {
    let directory = Repository.path("Tests/Golden")
    let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
    return files.filter { $0.hasSuffix(".binpb") }.sorted().compactMap { file in
      let name = String(file.dropLast(".binpb".count))
      // "<full.name>" or "<full.name>.<arm>"
      let messageName =
        name.split(separator: ".").last.map { Int($0) != nil } == true
        ? String(name[..<name.lastIndex(of: ".")!]) : name
      guard let type = allMessageTypes[messageName] else { return nil }
      let binary = try! Data(contentsOf: directory.appendingPathComponent(file))
      let text = try! String(contentsOf: directory.appendingPathComponent(name + ".txtpb"), encoding: .utf8)
      let root = messageName.hasPrefix("nest.testing.") ? "Tests/Protos" : "proto"
      return GoldenSample(
        name: name, messageName: messageName, binary: Array(binary), text: text, type: type,
        protoRoot: Repository.path(root))
    }
  }()
}

let allMessageTypes: [String: any NestMessage.Type] = NestProtoMessages.byName.merging(
  NestProtoTestingMessages.byName, uniquingKeysWith: { first, _ in first })

/// `protoc --decode=NAME` of `bytes`, with every proto file under `root`.
func protocDecode(_ name: String, _ bytes: [UInt8], root: URL) throws -> String {
  let result = try run(
    ["protoc", "-I", root.path, "--decode=\(name)"] + protoFiles(under: root), input: Data(bytes))
  #expect(result.status == 0, "protoc --decode failed: \(result.stderr)")
  return result.stdoutText
}

/// `protoc --encode=NAME` of `text`.
func protocEncode(_ name: String, _ text: String, root: URL) throws -> [UInt8] {
  let result = try run(
    ["protoc", "-I", root.path, "--encode=\(name)"] + protoFiles(under: root),
    input: Data(text.utf8))
  #expect(result.status == 0, "protoc --encode failed: \(result.stderr)")
  return Array(result.stdout)
}

/// Where two encodings first differ, as a short description (nil when equal): byte arrays
/// of whole messages are too long to print.
func firstDifference(_ actual: [UInt8], _ expected: [UInt8]) -> String? {
  guard actual != expected else { return nil }
  let index =
    zip(actual, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset
    ?? min(actual.count, expected.count)
  let context = { (bytes: [UInt8]) in bytes[index..<min(bytes.count, index + 8)].map { String($0, radix: 16) } }
  return "lengths \(actual.count) vs \(expected.count); first difference at byte \(index): "
    + "\(context(actual)) vs \(context(expected))"
}

@Suite("Golden files")
struct GoldenFileTests {
  @Test("every generated message type has a golden sample, and every sample a type")
  func coverage() throws {
    let covered = Set(GoldenSample.all.map(\.messageName))
    let missing = Set(allMessageTypes.keys).subtracting(covered).sorted()
    #expect(missing.isEmpty, "no golden file for \(missing): run scripts/generate-golden")
    let files = try FileManager.default.contentsOfDirectory(atPath: Repository.path("Tests/Golden").path)
      .filter { $0.hasSuffix(".binpb") }
    #expect(files.count == GoldenSample.all.count, "golden files without a generated type")
    #expect(allMessageTypes.count > 150)
  }

  @Test("decodes, re-encodes byte for byte, and round-trips Swift -> bytes -> Swift", arguments: GoldenSample.all)
  func roundTrip(_ sample: GoldenSample) throws {
    try Self.roundTrip(sample.type, sample)
  }

  static func roundTrip<M: NestMessage>(_ type: M.Type, _ sample: GoldenSample) throws {
    let value = try M(serializedBytes: sample.binary)
    // The sample sets every field, so it differs from the default message; a message without
    // fields (grpc.health.v1.HealthListRequest) has only the default to be.
    #expect(value != M() || sample.binary.isEmpty, "the sample sets fields, so it differs from the default message")
    #expect(value.unknownFields.isEmpty, "every field of the sample is known to this schema")
    let encoded = try value.serializedBytes()
    #expect(firstDifference(encoded, sample.binary) == nil, "the encoding changed: \(sample.name)")
    #expect(try M(serializedBytes: encoded) == value)
  }

  @Test("protoc decodes the Swift encoding to the golden text", arguments: GoldenSample.all)
  func protocReadsSwift(_ sample: GoldenSample) throws {
    let encoded = try Self.reencode(sample.type, sample.binary)
    #expect(try protocDecode(sample.messageName, encoded, root: sample.protoRoot) == sample.text)
  }

  @Test("Swift decodes what protoc encodes from the golden text", arguments: GoldenSample.all)
  func swiftReadsProtoc(_ sample: GoldenSample) throws {
    let fromProtoc = try protocEncode(sample.messageName, sample.text, root: sample.protoRoot)
    #expect(try Self.equalDecoded(sample.type, fromProtoc, sample.binary))
  }

  static func reencode<M: NestMessage>(_ type: M.Type, _ bytes: [UInt8]) throws -> [UInt8] {
    try M(serializedBytes: bytes).serializedBytes()
  }

  static func equalDecoded<M: NestMessage>(_ type: M.Type, _ lhs: [UInt8], _ rhs: [UInt8]) throws -> Bool {
    try M(serializedBytes: lhs) == M(serializedBytes: rhs)
  }
}
