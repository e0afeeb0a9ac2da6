// An identity provider for tests of a platform configured for one (`--auth-jwks-file`):
// keys made here, the JWKS written to a file, tokens signed as the provider would sign them,
// keys rotated and retired. Each service gets its own key (service:<identity>:1), published
// in the same JWKS, as an operator would publish them.
//
//     let provider = try await TestIdentityProvider(directory: folder)
//     let platform = try await NestTestPlatform.start(.processes(identityProvider: provider))
public import Foundation
import JWTKit
import NIOConcurrencyHelpers
import NestAuth
public import NestProto
public import NestServiceKit

public final class TestIdentityProvider: Sendable {
  public enum Algorithm: String, Sendable { case es256 = "ES256", eddsa = "EdDSA" }

  public let issuer: String
  public let audience: String
  public let directory: URL
  public var jwksFile: URL { self.directory.appendingPathComponent("jwks.json") }

  private struct State: Sendable {
    var signing: [String: SigningKey] = [:]
    var published: [String] = []
    var current = ""
    var serviceKeys: [[String: String]] = []
    var next = 1
  }
  private let state = NIOLockedValueBox(State())

  /// Makes the provider's first key (ES256, kid "idp-1") and one key per service, and
  /// writes the JWKS and the services' PEM keys into `directory`.
  public init(
    directory: URL, issuer: String = "https://idp.nest.test", audience: String = "nest", algorithm: Algorithm = .es256
  ) async throws {
    self.directory = directory
    self.issuer = issuer
    self.audience = audience
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    var serviceKeys: [[String: String]] = []
    for (index, service) in NestServiceName.allCases.enumerated() {
      // Half the services on P-256, half on Ed25519: both kinds of service key in use.
      let pem = try Self.newKey(index % 2 == 0 ? .es256 : .eddsa)
      try pem.write(to: self.serviceKeyFile(service), atomically: true, encoding: .utf8)
      serviceKeys.append(try await SigningKey(pem: pem, keyID: Self.serviceKeyID(service)).publicJWK)
    }
    self.state.withLockedValue { $0.serviceKeys = serviceKeys }
    _ = try await self.rotate(to: algorithm)
  }

  public func serviceKeyFile(_ service: NestServiceName) -> URL {
    self.directory.appendingPathComponent("\(service.identity).key.pem")
  }

  public static func serviceKeyID(_ service: NestServiceName) -> String {
    ServiceSigningKey.keyID(service: service.identity, version: "1")
  }

  /// What `service` is started with.
  public func configuration(for service: NestServiceName) -> Identity.IdentityProvider {
    Identity.IdentityProvider(
      jwksFile: self.jwksFile.path, issuer: self.issuer, audience: self.audience,
      serviceKeyFile: self.serviceKeyFile(service).path, serviceKeyID: Self.serviceKeyID(service))
  }

  /// The key new tokens are signed with.
  public var currentKeyID: String { self.state.withLockedValue { $0.current } }

  /// A token as the provider issues it; `keyID`, `issuer` and `audience` override its own.
  public func sign(
    subject: String, role: Nest_Common_V1_Role, lifetime: Duration = .seconds(3600), keyID: String? = nil,
    issuer: String? = nil, audience: String? = nil
  ) async throws -> String {
    let key = try self.state.withLockedValue { state in
      let kid = keyID ?? state.current
      guard let key = state.signing[kid] else { throw TokenError("the test provider has no key \(kid)") }
      return key
    }
    return try await key.sign(
      subject: subject, role: role, lifetime: lifetime, issuer: issuer ?? self.issuer,
      audience: audience ?? self.audience)
  }

  /// A rotation: a new key, published beside the others and used for new tokens. Its kid.
  public func rotate(to algorithm: Algorithm = .es256) async throws -> String {
    let kid = self.state.withLockedValue { state in
      defer { state.next += 1 }
      return "idp-\(state.next)"
    }
    let key = try await SigningKey(pem: try Self.newKey(algorithm), keyID: kid)
    try self.state.withLockedValue { state in
      state.signing[kid] = key
      state.published.append(kid)
      state.current = kid
      try self.writeJWKS(state)
    }
    return kid
  }

  /// A new private key, PEM.
  public static func newKey(_ algorithm: Algorithm) throws -> String {
    switch algorithm {
    case .es256: ES256PrivateKey().pemRepresentation
    case .eddsa: try EdDSA.PrivateKey().pemRepresentation
    }
  }

  /// Takes `kid` out of the JWKS: tokens it signed are no longer accepted.
  public func retire(_ kid: String) throws {
    try self.state.withLockedValue { state in
      state.published.removeAll { $0 == kid }
      try self.writeJWKS(state)
    }
  }

  private func writeJWKS(_ state: State) throws {
    let keys = state.published.compactMap { state.signing[$0]?.publicJWK } + state.serviceKeys
    let data = try JSONSerialization.data(withJSONObject: ["keys": keys], options: [.prettyPrinted, .sortedKeys])
    // Whole or not at all: a service never reads half a JWKS.
    try data.write(to: self.jwksFile, options: .atomic)
  }
}
