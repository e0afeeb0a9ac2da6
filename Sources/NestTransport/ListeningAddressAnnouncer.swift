// Prints "listening on HOST:PORT" once a server is bound, so that whoever started the
// process (a launcher, a test) learns where it is, with --port 0 too.
import Foundation
import NIOCore
public import ServiceLifecycle

public struct ListeningAddressAnnouncer: Service {
  private let transport: NestServerTransport

  public init(transport: NestServerTransport) {
    self.transport = transport
  }

  public func run() async throws {
    let address = try await self.transport.listeningAddress()
    print("listening on \(address.ipAddress ?? "?"):\(address.port ?? 0)")
    fflush(nil)
  }
}
