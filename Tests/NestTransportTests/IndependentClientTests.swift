// An independent implementation of the protocol (Tests/Python/contract_client.py: Python's
// protobuf runtime, a plain socket, a JWT it signs itself) against the Swift server.
import Foundation
import NestAuth
import NestProtoTesting
import Testing

@Suite("Independent client", .timeLimit(.minutes(3)))
struct IndependentClientTests {
  @Test("a Python client speaks the protocol: HELLO, health without credentials, a protected call")
  func python() async throws {
    let secret = "python-contract-secret-\(UUID())"
    let tokens = try await NestTokens(secret: secret)
    let server = try await TestServer(interceptors: [AuthServerInterceptor(tokens: tokens)])
    let port = try await server.port
    let result = try await Task.detached {
      try run([
        "env", "NEST_AUTH_SECRET=\(secret)", "python3",
        Repository.path("Tests/Python/contract_client.py").path, "--port", "\(port)",
      ])
    }.value
    #expect(result.status == 0, "python client failed:\n\(result.stdoutText)\n\(result.stderr)")
    #expect(result.stdoutText.contains("protected call with own token: python-client as customer"))
    #expect(result.stdoutText.contains("without a token: UNAUTHENTICATED"))
    await server.stop()
  }
}
