// swift-tools-version:6.1
// libFuzzer targets, in their own package so the main build and CI's stay lean. Built and
// run by scripts/fuzz with -sanitize=fuzzer,address.
import Foundation
import PackageDescription

// A path dependency is named after its folder, which is whatever the clone is called.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .lastPathComponent

let package = Package(
  name: "nest-fuzz",
  platforms: [.macOS(.v15)],
  dependencies: [.package(path: "..")],
  targets: [
    // Decodes arbitrary bytes as each message type of proto/ (the first byte picks which).
    .executableTarget(
      name: "nest-fuzz-messages",
      dependencies: [.product(name: "NestProto", package: root)],
      swiftSettings: [.swiftLanguageMode(.v6), .unsafeFlags(["-parse-as-library"])]
    )
  ]
)
