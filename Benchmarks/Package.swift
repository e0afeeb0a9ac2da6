// swift-tools-version:6.1
// Benchmarks, in their own package so CI's build stays lean. Run in release:
//   swift run -c release --package-path Benchmarks nest-codec-bench
import Foundation
import PackageDescription

// A path dependency is named after its folder, which is whatever the clone is called.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .lastPathComponent

let package = Package(
  name: "nest-benchmarks",
  platforms: [.macOS(.v15)],
  dependencies: [.package(path: "..")],
  targets: [
    // Encode and decode of a realistic order: the Swift types against raw protobuf-c.
    .executableTarget(
      name: "nest-codec-bench",
      dependencies: [.product(name: "NestProto", package: root)],
      swiftSettings: [.swiftLanguageMode(.v6)]
    )
  ]
)
