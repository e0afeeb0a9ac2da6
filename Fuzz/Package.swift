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
  dependencies: [
    .package(path: ".."),
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
  ],
  targets: [
    // The libFuzzer driver hand-off every target uses.
    .target(name: "FuzzSupport", swiftSettings: [.swiftLanguageMode(.v6)]),
    // Decodes arbitrary bytes as each message type of proto/ (the first byte picks which).
    .executableTarget(
      name: "nest-fuzz-messages",
      dependencies: ["FuzzSupport", .product(name: "NestProto", package: root)],
      swiftSettings: [.swiftLanguageMode(.v6), .unsafeFlags(["-parse-as-library"])]
    ),
    // Feeds arbitrary bytes to the server's frame decoder, as a connection would.
    .executableTarget(
      name: "nest-fuzz-frames",
      dependencies: [
        "FuzzSupport",
        .product(name: "NestTransport", package: root),
        .product(name: "NestProto", package: root),
        .product(name: "NIOCore", package: "swift-nio"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6), .unsafeFlags(["-parse-as-library"])]
    ),
  ]
)
