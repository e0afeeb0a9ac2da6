// Starting services: a loopback port nothing listens on (so that peers can be told each
// other's address before any of them starts), and waiting until a service answers
// Health/Check SERVING.
import Foundation
import GRPCCore
import NestProto
public import NestTransport

#if canImport(Glibc)
  import Glibc
#endif

public enum Readiness {
  /// A loopback TCP port nothing listens on right now (the kernel's choice for port 0).
  public static func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw ConfigurationError("cannot open a socket to find a free port") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
        bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
      }
    }
    guard bound else { throw ConfigurationError("cannot bind a loopback socket to find a free port") }
    return Int(UInt16(bigEndian: address.sin_port))
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
