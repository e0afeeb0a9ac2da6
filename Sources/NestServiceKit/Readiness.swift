// Starting services: a loopback port nothing listens on (so that peers can be told each
// other's address before any of them starts), and waiting until a service answers
// Health/Check SERVING.
import Foundation
import GRPCCore
import NIOConcurrencyHelpers
import NestProto
public import NestTransport

#if canImport(Glibc)
  import Glibc
#endif

public enum Readiness {
  /// A loopback TCP port nothing listens on right now, below the kernel's ephemeral range
  /// (32768 and up on Linux), so that no outgoing connection takes it before the service
  /// binds it, and never the same one twice in this process.
  public static func freeLoopbackPort() throws -> Int {
    for _ in 0..<portSpan {
      let port = nextPort.withLockedValue { next in
        defer { next = next + 1 == portRange.upperBound ? portRange.lowerBound : next + 1 }
        return next
      }
      if canBind(port) { return port }
    }
    throw ConfigurationError("no free loopback port in \(portRange)")
  }

  private static let portRange = 20_000..<32_000
  private static let portSpan = 12_000
  private static let nextPort = NIOLockedValueBox(
    20_000 + Int(UInt32(truncatingIfNeeded: getpid()) &* 2_654_435_761 % 12_000))

  private static func canBind(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    return withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
      }
    }
  }

  /// Waits until the service at `address` answers Health/Check SERVING; false after `timeout`.
  public static func waitUntilServing(_ address: ServiceAddress, timeout: Duration = .seconds(30)) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      let serving = try? await withGRPCClient(
        transport: NestClientTransport(.init(host: address.host, port: address.port, peerName: "readiness"))
      ) { client in
        var options = CallOptions.defaults
        options.timeout = .seconds(1)
        return try await Nest_Health_V1_Health.Client(wrapping: client).check(.init(), options: options).status
          == .serving
      }
      if serving == true { return true }
      try? await Task.sleep(for: .milliseconds(50))
    }
    return false
  }
}
