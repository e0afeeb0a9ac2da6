// The service layer's layout, held: the rules (each service's Model and NestDomain) import
// nothing of RPC, storage, I/O or the command line; nothing checks a caller's role outside the
// access interceptor; nothing in the services can crash them with try!.
import Foundation
import NestProtoTesting
import Testing

@Suite("Layout")
struct LayoutTests {
  /// Every Swift file under `folder`, with its text.
  func sources(_ folder: String) throws -> [(String, String)] {
    let root = Repository.path(folder)
    guard let files = FileManager.default.enumerator(atPath: root.path) else { return [] }
    return try files.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") && !$0.contains("Generated/") }.map {
      ("\(folder)/\($0)", try String(contentsOf: root.appendingPathComponent($0), encoding: .utf8))
    }
  }

  @Test("the rules import neither GRPCCore, GRDB, NIO, ArgumentParser nor the service kit")
  func pureRules() throws {
    let allowed: Set<String> = ["Foundation", "Synchronization", "NestProto", "NestDomain", "Crypto"]
    var files = try self.sources("Sources/NestDomain")
    for service in ["Catalog", "Entitlement", "MarketplaceOrder", "Settlement", "Events"] {
      files += try self.sources("Sources/\(service)/Model")
    }
    #expect(files.count >= 10)
    for (path, text) in files {
      let imports = text.split(separator: "\n").filter { $0.hasPrefix("import ") || $0.hasPrefix("public import ") }
        .map { String($0.split(separator: " ").last!) }
      for module in imports {
        #expect(allowed.contains(module), "\(path) imports \(module)")
      }
    }
  }

  @Test("no Caller.require and no try! in the services")
  func oneEnforcement() throws {
    for (path, text) in try self.sources("Sources") {
      #expect(!text.contains("Caller.require"), "\(path)")
      if !path.hasPrefix("Sources/NestProtoCompiler") {
        #expect(!text.contains("try!"), "\(path)")
      }
    }
  }
}
