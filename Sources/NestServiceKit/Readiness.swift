// Waiting until a service answers Health/Check SERVING.
import Foundation
import GRPCCore
import NestProto
import NestTransport

public enum Readiness {
  /// Waits until the service at `address` answers Health/Check SERVING; false after `timeout`.
  public static func waitUntilServing(_ address: ServiceAddress, timeout: Duration = .seconds(30)) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
      do {
        let status = try await withGRPCClient(
          transport: NestClientTransport(.init(host: address.host, port: address.port, peerName: "readiness"))
        ) { client in
          var options = CallOptions.defaults
          options.timeout = .seconds(1)
          return try await Nest_Health_V1_Health.Client(wrapping: client).check(.init(), options: options).status
        }
        if status == .serving { return true }
      } catch {
        // Not up yet: ask again shortly.
      }
      do { try await Task.sleep(for: .milliseconds(50)) } catch { return false }
    }
    return false
  }
}
