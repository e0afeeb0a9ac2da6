// The breaking-change guard: proto/ against its baseline, and each rule on a small schema.
import Foundation
import NestProtoCompiler
import NestProtoTesting
import Testing

/// The descriptor set protoc makes of `protos` (file name -> source).
private func descriptorSet(_ protos: [String: String]) throws -> [ProtoFile] {
  let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nest-compat-\(UUID())")
  try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(at: directory) }
  for (name, source) in protos {
    try source.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
  }
  let output = directory.appendingPathComponent("set.binpb")
  let result = try run(
    ["protoc", "-I", directory.path, "--include_imports", "--descriptor_set_out=\(output.path)"]
      + protos.keys.sorted())
  #expect(result.status == 0, "\(result.stderr)")
  return try decodeFileDescriptorSet(Array(Data(contentsOf: output)))
}

private let baseSchema = """
  syntax = "proto3";
  package compat.v1;
  enum Color { COLOR_UNSPECIFIED = 0; COLOR_RED = 1; COLOR_BLUE = 2; }
  message Item {
    string id = 1;
    int32 count = 2;
    repeated string tags = 3;
    Color color = 4;
    oneof choice { string a = 5; int64 b = 6; }
    string note = 7;
  }
  message Other { string id = 1; }
  service Shop {
    rpc Get(Item) returns (Item);
    rpc List(Item) returns (Item);
  }
  service Admin { rpc Reset(Other) returns (Other); }
  """

private func changes(after edit: (String) -> String) throws -> [String] {
  let baseline = try descriptorSet(["compat.proto": baseSchema])
  let edited = edit(baseSchema)
  #expect(edited != baseSchema, "the edit must change the schema, or the test proves nothing")
  let current = try descriptorSet(["compat.proto": edited])
  return breakingChanges(baseline: baseline, current: current).map(\.description)
}

@Suite("Breaking-change guard")
struct BreakingChangeTests {
  @Test("proto/ has no breaking change against proto/descriptor-baseline.binpb")
  func contractAgainstBaseline() throws {
    let root = Repository.path("proto")
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("nest-current-\(UUID()).binpb")
    defer { try? FileManager.default.removeItem(at: output) }
    let result = try run(
      ["protoc", "-I", root.path, "--include_imports", "--descriptor_set_out=\(output.path)"] + protoFiles(under: root))
    #expect(result.status == 0, "\(result.stderr)")
    let current = try decodeFileDescriptorSet(Array(Data(contentsOf: output)))
    let baseline = try decodeFileDescriptorSet(
      Array(Data(contentsOf: Repository.path("proto/descriptor-baseline.binpb"))))
    #expect(baseline.flatMap(\.services).count == 5)
    let found = breakingChanges(baseline: baseline, current: current)
    #expect(
      found.isEmpty,
      "\(found.map(\.description).joined(separator: "\n"))\nIf deliberate: scripts/update-proto-baseline --update")
  }

  @Test("additions are compatible: new fields, values, messages, RPCs and services")
  func additions() throws {
    let found = try changes {
      $0.replacingOccurrences(of: "string note = 7;", with: "string note = 7; bool extra = 8;")
        .replacingOccurrences(of: "COLOR_BLUE = 2;", with: "COLOR_BLUE = 2; COLOR_GREEN = 3;")
        .replacingOccurrences(
          of: "rpc List(Item) returns (Item);", with: "rpc List(Item) returns (Item); rpc Put(Item) returns (Other);")
        + "\nmessage Added { int32 x = 1; }\nservice Extra { rpc Ping(Other) returns (Other); }\n"
    }
    #expect(found == [])
  }

  @Test("a removed field must leave its number reserved")
  func removedField() throws {
    #expect(
      try changes { $0.replacingOccurrences(of: "string note = 7;", with: "") }
        == ["compat.v1.Item.note (7): field removed without reserving its number"])
    #expect(try changes { $0.replacingOccurrences(of: "string note = 7;", with: "reserved 7;") } == [])
  }

  @Test("a field's number, type or cardinality cannot change")
  func changedField() throws {
    #expect(
      try changes { $0.replacingOccurrences(of: "int32 count = 2;", with: "int64 count = 2;") }
        == ["compat.v1.Item.count (2): type changed from int32 to int64"])
    #expect(
      try changes { $0.replacingOccurrences(of: "repeated string tags = 3;", with: "string tags = 3;") }
        == ["compat.v1.Item.tags (3): cardinality changed from repeated to optional"])
    #expect(
      try changes { $0.replacingOccurrences(of: "Color color = 4;", with: "Other color = 4;") }
        == ["compat.v1.Item.color (4): type changed from compat.v1.Color to compat.v1.Other"])
    #expect(
      try changes { $0.replacingOccurrences(of: "string id = 1;\n  int32", with: "string id = 9;\n  int32") }
        == ["compat.v1.Item.id (1): field removed without reserving its number"])
  }

  @Test("a field cannot move into or out of a oneof")
  func oneofMembership() throws {
    let found = try changes {
      $0.replacingOccurrences(
        of: "oneof choice { string a = 5; int64 b = 6; }\n  string note = 7;",
        with: "oneof choice { string a = 5; int64 b = 6; string note = 7; }")
    }
    #expect(found == ["compat.v1.Item.note (7): moved from oneof (none) to choice"])
  }

  @Test("an enum value must stay or be reserved")
  func enumValues() throws {
    #expect(
      try changes { $0.replacingOccurrences(of: " COLOR_BLUE = 2;", with: "") }
        == ["compat.v1.Color.COLOR_BLUE (2): enum value removed without reserving its number"])
    #expect(try changes { $0.replacingOccurrences(of: " COLOR_BLUE = 2;", with: " reserved 2;") } == [])
  }

  @Test("RPCs and services are never removed and keep their request and response types")
  func services() throws {
    #expect(
      try changes { $0.replacingOccurrences(of: "rpc List(Item) returns (Item);", with: "") }
        == ["compat.v1.Shop/List: RPC removed"])
    #expect(
      try changes {
        $0.replacingOccurrences(of: "rpc Get(Item) returns (Item);", with: "rpc Get(Other) returns (Item);")
      }
        == ["compat.v1.Shop/Get: request type changed from compat.v1.Item to compat.v1.Other"])
    #expect(
      try changes {
        $0.replacingOccurrences(of: "rpc Get(Item) returns (Item);", with: "rpc Get(Item) returns (stream Item);")
      }
        == ["compat.v1.Shop/Get: streaming changed"])
    #expect(
      try changes { $0.replacingOccurrences(of: "service Admin { rpc Reset(Other) returns (Other); }", with: "") }
        == ["compat.v1.Admin: service removed"])
  }

  @Test("a removed message is reported")
  func removedMessage() throws {
    let found = try changes {
      $0.replacingOccurrences(of: "message Other { string id = 1; }", with: "")
        .replacingOccurrences(of: "Other", with: "Item")
    }
    #expect(found.contains("compat.v1.Other: message removed"))
  }
}
