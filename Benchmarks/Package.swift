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
  dependencies: [
    .package(path: ".."),
    // The references the transport is measured against, and the latency histogram.
    .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    // Allocation counts per call in the codec and transport benchmarks.
    .package(url: "https://github.com/ordo-one/malloc-interposer", from: "1.6.1"),
  ],
  targets: [
    // Allocation counts (the malloc interposer, linked into the codec and transport benchmarks).
    .target(
      name: "NestBenchSupport",
      dependencies: [.product(name: "MallocInterposerSwift", package: "malloc-interposer")],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    // Encode and decode of a realistic order: the Swift types against raw protobuf-c.
    .executableTarget(
      name: "nest-codec-bench",
      dependencies: [.product(name: "NestProto", package: root), "NestBenchSupport"],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    // Unary calls over NestTransport beside HTTP/2, in-process and a raw NIO echo.
    .executableTarget(
      name: "nest-transport-bench",
      dependencies: [
        "NestBenchSupport",
        .product(name: "NestTransport", package: root),
        .product(name: "NestProtoTesting", package: root),
        .product(name: "NestProto", package: root),
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCInProcessTransport", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "Histogram", package: "hdrhistogram-swift"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    // The whole platform under load, beside SQLite's commit rate and the RPC rate.
    .executableTarget(
      name: "nest-bench",
      dependencies: [
        .product(name: "NestTestKit", package: root),
        .product(name: "NestScenarios", package: root),
        .product(name: "NestServiceKit", package: root),
        .product(name: "NestTransport", package: root),
        .product(name: "NestAuth", package: root),
        .product(name: "NestProto", package: root),
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "Histogram", package: "hdrhistogram-swift"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
  ]
)
