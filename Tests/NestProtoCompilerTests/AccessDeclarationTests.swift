// The access declarations of proto/ as the generator reads them: every RPC declares one, the
// generator refuses an RPC without one (or one that makes no sense), and the "Who:" line of
// each RPC's comment says exactly what its declaration says.
import Foundation
import NestProtoCompiler
import NestProtoTesting
import Testing

/// proto/ read by protoc with comments, and the generator's view of it.
func contract() throws -> [ProtoFile] {
  let output = FileManager.default.temporaryDirectory.appendingPathComponent("contract-\(UUID()).binpb")
  defer { try? FileManager.default.removeItem(at: output) }
  let protos = try FileManager.default.subpathsOfDirectory(atPath: Repository.path("proto").path)
    .filter { $0.hasSuffix(".proto") }.sorted()
  let result = try run(
    [
      "protoc", "-I", Repository.path("proto").path, "-I", "/usr/include", "--include_imports", "--include_source_info",
      "--descriptor_set_out=\(output.path)",
    ] + protos)
  #expect(result.status == 0, "\(result.stderr)")
  return try decodeFileDescriptorSet(Array(Data(contentsOf: output)))
}

/// The canonical "Who:" line of a declaration: the party roles (with the relation they must
/// hold to the resource), then operator, then the services that may call.
func whoLine(_ access: MethodAccessDeclaration) -> String {
  if access.open { return "Who: anyone, without credentials." }
  let names: [Int32: String] = [1: "isv", 2: "distributor", 3: "customer"]
  let phrases: [Int32: String] = [
    1: "the R's owner", 2: "the R's buyer", 3: "the R's seller", 4: "a party to the R", 5: "the R's ISV",
    6: "the R's distributor", 7: "the R's customer", 8: "the R's resource owner", 9: "one who may see the R",
  ]
  let parties = access.roles.compactMap { names[$0] }
  var clauses: [String] = []
  if !parties.isEmpty {
    var clause = parties.count == 1 ? parties[0] : parties.dropLast().joined(separator: ", ") + " or " + parties.last!
    if let phrase = phrases[access.relation] {
      clause += " as " + phrase.replacingOccurrences(of: "R", with: access.resource)
    }
    clauses.append(clause)
  }
  if access.roles.contains(4) { clauses.append("operator") }
  if access.roles.contains(5) { clauses.append("service (\(access.services.joined(separator: ", ")))") }
  return "Who: " + clauses.joined(separator: "; ") + "."
}

@Suite("Access declarations")
struct AccessDeclarationTests {
  @Test("every RPC of proto/ declares who may call it, and its comment's Who: line says the same")
  func whoLines() throws {
    var checked = 0
    for file in try contract() where file.name.hasPrefix("nest/") {
      for service in file.services {
        for method in service.methods {
          let access = try #require(try method.access(), "\(service.name).\(method.name) declares nothing")
          let who = method.comments.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { $0.hasPrefix("Who:") }
          #expect(who == [whoLine(access)], "\(service.name).\(method.name)")
          checked += 1
        }
      }
    }
    #expect(checked == 79)  // 78 RPCs of the five services, and health
  }

  @Test("the generator refuses an RPC without a declaration, and one whose declaration makes no sense")
  func refused() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("access-\(UUID())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let plugin = Repository.productsDirectory.appendingPathComponent("protoc-gen-nest-swift").path
    func generate(_ method: String) throws -> ProcessResult {
      try """
      syntax = "proto3";
      package shop.v1;
      import "nest/access/v1/access.proto";
      message Item { string id = 1; }
      service Shop {
        \(method)
      }
      """.write(to: directory.appendingPathComponent("shop.proto"), atomically: true, encoding: .utf8)
      return try run([
        "protoc", "-I", directory.path, "-I", Repository.path("proto").path, "-I", "/usr/include",
        "--plugin=protoc-gen-nest-swift=\(plugin)", "--nest-swift_out=\(directory.path)",
        "--nest-swift_opt=Access=required", "shop.proto",
      ])
    }
    let undeclared = try generate("rpc Get(Item) returns (Item);")
    #expect(undeclared.status != 0)
    #expect(undeclared.stderr.contains("shop.v1.Shop/Get declares no (nest.access.v1.method)"), "\(undeclared.stderr)")
    let serviceWithoutNames = try generate(
      "rpc Get(Item) returns (Item) { option (nest.access.v1.method) = {roles: [ROLE_SERVICE]}; }")
    #expect(serviceWithoutNames.stderr.contains("ROLE_SERVICE needs the services that may call it"))
    let nobody = try generate("rpc Get(Item) returns (Item) { option (nest.access.v1.method) = {}; }")
    #expect(nobody.stderr.contains("no roles may call it"))
    let relationAlone = try generate(
      "rpc Get(Item) returns (Item) { option (nest.access.v1.method) = {roles: [ROLE_ISV] relation: RELATION_OWNER}; }")
    #expect(relationAlone.stderr.contains("a relation needs its resource"))
    let fine = try generate(
      "rpc Get(Item) returns (Item) { option (nest.access.v1.method) = {roles: [ROLE_ISV] resource: \"item\" relation: RELATION_OWNER}; }"
    )
    #expect(fine.status == 0, "\(fine.stderr)")
    let table = try String(contentsOf: directory.appendingPathComponent("NestProtoMessages.swift"), encoding: .utf8)
    #expect(
      table.contains(#""shop.v1.Shop/Get": .with { $0.roles = [.isv]; $0.resource = "item"; $0.relation = .owner }"#))
  }
}
