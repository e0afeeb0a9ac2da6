// Between GRPCCore's values and the wire's: metadata entries, method paths, statuses and
// the deadline (GRPCCore carries it as `grpc-timeout` metadata, the wire as timeout_ms).
import GRPCCore
import NestProto
import NestProtoRuntime

extension Metadata {
  /// GRPCCore's deadline key; the wire carries the deadline in `timeout_ms` instead.
  static let timeoutKey = "grpc-timeout"

  init(wire entries: [Nest_Wire_V1_MetadataEntry]) {
    self.init()
    for entry in entries {
      switch entry.value {
      case .text(let text)?: self.addString(text, forKey: entry.key)
      case .binary(let bytes)?: self.addBinary(bytes, forKey: entry.key)
      case nil: self.addString("", forKey: entry.key)
      }
    }
  }

  /// Wire entries for everything but the deadline.
  var wireEntries: [Nest_Wire_V1_MetadataEntry] {
    self.compactMap { key, value in
      guard key.lowercased() != Self.timeoutKey else { return nil }
      return Nest_Wire_V1_MetadataEntry.with {
        $0.key = key.lowercased()
        switch value {
        case .string(let text): $0.value = .text(text)
        case .binary(let bytes): $0.value = .binary(bytes)
        }
      }
    }
  }

  /// The deadline GRPCCore put in `grpc-timeout`, in whole milliseconds (0: none).
  var timeoutMilliseconds: UInt32 {
    guard let text = self[stringValues: Self.timeoutKey].first(where: { _ in true }),
      let unit = text.last, let amount = UInt64(text.dropLast())
    else { return 0 }
    let milliseconds: UInt64
    switch unit {
    case "H": milliseconds = amount &* 3_600_000
    case "M": milliseconds = amount &* 60_000
    case "S": milliseconds = amount &* 1_000
    case "m": milliseconds = amount
    case "u": milliseconds = (amount + 999) / 1_000
    case "n": milliseconds = (amount + 999_999) / 1_000_000
    default: return 0
    }
    return UInt32(clamping: Swift.max(milliseconds, 1))
  }
}

extension MethodDescriptor {
  /// From a wire path, "/nest.catalog.v1.CatalogService/GetService".
  init?(wirePath path: String) {
    let trimmed = path.hasPrefix("/") ? path.dropFirst() : Substring(path)
    guard let slash = trimmed.lastIndex(of: "/"), slash != trimmed.startIndex,
      trimmed.index(after: slash) != trimmed.endIndex
    else { return nil }
    self.init(
      fullyQualifiedService: String(trimmed[..<slash]),
      method: String(trimmed[trimmed.index(after: slash)...]))
  }

  var wirePath: String { "/" + self.fullyQualifiedMethod }
}

extension Nest_Wire_V1_Status {
  init(_ status: Status) {
    self.init()
    self.code = Int32(status.code.rawValue)
    self.message = status.message
  }

  init(code: RPCError.Code, message: String) {
    self.init()
    self.code = Int32(code.rawValue)
    self.message = message
  }

  var grpcStatus: Status {
    Status(code: Status.Code(rawValue: Int(self.code)) ?? .unknown, message: self.message)
  }
}
