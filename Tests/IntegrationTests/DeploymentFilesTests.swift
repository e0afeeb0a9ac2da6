// docker-compose.yml and the Dockerfile, checked without a Docker engine: compose's own
// validation of the file, that every service, volume and health check is there, and that the
// image's Swift can read every manifest the build needs.
import Foundation
import NestProtoTesting
import Testing

@Suite("Deployment files", .timeLimit(.minutes(3)))
struct DeploymentFilesTests {
  static let executables = [
    "catalog-service", "entitlement-service", "marketplace-order-service", "settlement-service", "events-service",
    "nestctl",
  ]

  @Test("docker-compose config accepts the file: five services with their volumes, health checks and a demo profile")
  func compose() throws {
    let secret = ["NEST_AUTH_SECRET": String(repeating: "s", count: 32)]
    let config = try run(["docker-compose", "config"], in: Repository.root, environment: secret)
    #expect(config.status == 0, "\(config.stderr)")
    let services = try run(["docker-compose", "config", "--services"], in: Repository.root, environment: secret)
    #expect(
      Set(services.stdoutText.split(separator: "\n")) == [
        "catalog", "entitlement", "marketplace-order", "settlement", "events", "demo",
      ])
    // The demo only runs when asked for: it is in the demo profile.
    #expect(config.stdoutText.contains("profiles:\n    - demo"))
    let volumes = try run(["docker-compose", "config", "--volumes"], in: Repository.root, environment: secret)
    #expect(
      Set(volumes.stdoutText.split(separator: "\n")) == [
        "catalog-data", "entitlement-data", "order-data", "settlement-data", "events-data",
      ])
    for (port, _) in [
      ("7101", "catalog"), ("7102", "entitlement"), ("7103", "order"), ("7104", "settlement"), ("7105", "events"),
    ] {
      #expect(config.stdoutText.contains("- 127.0.0.1:\(port)"), "no health check on \(port)")
    }
    // No secret, no platform: compose says what is missing.
    let missing = try run(
      ["docker-compose", "config"], in: Repository.root, environment: ["NEST_AUTH_SECRET": ""])
    #expect(missing.status != 0)
    #expect(missing.stderr.contains("set NEST_AUTH_SECRET"))
  }

  /// `major.minor` (a minor left out is 0) of a `// swift-tools-version:X.Y[.Z]` line, a
  /// `swift:X.Y[...]` image tag or a `Package@swift-X[.Y[.Z]].swift` file name.
  static func version(after marker: String, in text: String) -> [Int]? {
    guard let range = text.range(of: marker) else { return nil }
    let digits = text[range.upperBound...].drop { $0 == " " || $0 == "\t" }.prefix { $0.isNumber || $0 == "." }
    let parts = digits.split(separator: ".").compactMap { Int($0) }
    guard let major = parts.first else { return nil }
    return [major, parts.count > 1 ? parts[1] : 0]
  }

  /// The manifest a SwiftPM of `swift` reads in `package`, by SwiftPM's rule: the newest
  /// `Package@swift-X[.Y[.Z]].swift` not newer than it, else `Package.swift`.
  static func manifest(in package: URL, for swift: [Int]) throws -> URL {
    let prefix = "Package@swift-"
    let specific = try FileManager.default.contentsOfDirectory(atPath: package.path).compactMap {
      name -> ([Int], String)? in
      guard name.hasPrefix(prefix), name.hasSuffix(".swift") else { return nil }
      return Self.version(after: prefix, in: name).map { ($0, name) }
    }
    let usable = specific.filter { !swift.lexicographicallyPrecedes($0.0) }
    let chosen = usable.max { $0.0.lexicographicallyPrecedes($1.0) }?.1 ?? "Package.swift"
    return package.appendingPathComponent(chosen)
  }

  @Test("the image builds with a Swift at least as new as every manifest it resolves asks for")
  func imageSwiftVersion() throws {
    let dockerfile = try String(contentsOf: Repository.path("Dockerfile"), encoding: .utf8)
    let image = try #require(Self.version(after: "FROM swift:", in: dockerfile), "no swift:X.Y build image")
    // This build's own checkouts: the dependencies as this build resolved them (Package.resolved
    // is not committed, so an image built later resolves the newest in the same ranges), whose
    // manifests the image's SwiftPM has to read: a tools version above its own is an error
    // before anything builds.
    let checkouts = Repository.productsDirectory
      .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("checkouts")
    try #require(
      FileManager.default.fileExists(atPath: checkouts.path), "no resolved dependencies at \(checkouts.path)")
    let packages = try FileManager.default.contentsOfDirectory(atPath: checkouts.path)
    #expect(packages.count >= 10, "the resolved dependencies are not at \(checkouts.path)")
    let spelled = { (version: [Int]) in version.map(String.init).joined(separator: ".") }
    var manifests = [("this package", try Self.manifest(in: Repository.root, for: image))]
    for package in packages.sorted() {
      manifests.append((package, try Self.manifest(in: checkouts.appendingPathComponent(package), for: image)))
    }
    for (name, manifest) in manifests {
      let text = try String(contentsOf: manifest, encoding: .utf8)
      let tools = try #require(Self.version(after: "swift-tools-version:", in: text), "no tools version in \(name)")
      #expect(
        !image.lexicographicallyPrecedes(tools),
        "swift:\(spelled(image)) cannot read \(name)'s \(manifest.lastPathComponent) (swift-tools-version \(spelled(tools)))"
      )
    }
  }

  @Test("the image carries every executable and the proto files nestctl encodes with")
  func dockerfile() throws {
    let dockerfile = try String(contentsOf: Repository.path("Dockerfile"), encoding: .utf8)
    #expect(dockerfile.contains("COPY proto /usr/share/nest/proto"))
    // The build step, run by sh as docker would, with a stand-in for swift that builds what
    // SwiftPM builds: only the last --product it is given.
    let lines = dockerfile.replacingOccurrences(of: "\\\n", with: " ").split(separator: "\n")
    let products =
      lines.first { $0.hasPrefix("ARG PRODUCTS=") }?
      .dropFirst("ARG PRODUCTS=".count).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) ?? ""
    let step = try #require(lines.first { $0.hasPrefix("RUN ") && $0.contains("swift build") }).dropFirst(4)
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dockerfile-\(UUID())")
    defer { try? FileManager.default.removeItem(at: directory) }
    let bin = directory.appendingPathComponent("bin")
    try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
    let swift = bin.appendingPathComponent("swift")
    try """
    #!/bin/sh
    product=
    while [ $# -gt 0 ]; do [ "$1" = --product ] && product=$2; shift; done
    echo "$product" >> built
    mkdir -p .build/release && touch ".build/release/$product"
    """.write(to: swift, atomically: true, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: swift.path)
    let out = directory.appendingPathComponent("out").path
    let result = try run(
      ["sh", "-c", step.replacingOccurrences(of: "/out", with: out)], in: directory,
      environment: ["PATH": "\(bin.path):/usr/bin:/bin", "PRODUCTS": products])
    #expect(result.status == 0, "\(result.stderr)")
    let built = try String(contentsOf: directory.appendingPathComponent("built"), encoding: .utf8)
    #expect(built.split(separator: "\n").map(String.init) == Self.executables)
    #expect(try FileManager.default.contentsOfDirectory(atPath: out).sorted() == Self.executables.sorted())
  }
}
