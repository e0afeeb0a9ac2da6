// The platform's bearer tokens (docs/design.md §4): claims sub, role, exp, iss, and in an
// identity provider's tokens aud. Two ways to trust them:
//
// - a shared secret (HS256): every holder can sign any token. For local use and the demo.
// - an identity provider's JWKS (ES256 or EdDSA public keys by `kid`): the service verifies
//   and holds no key that can sign a user's token. Its own calls to other services carry a
//   token it signs with its service key, whose `kid` names the service
//   ("service:<identity>:<version>"): such a key proves that service and nothing else, and a
//   token of role `service` proves a service only when signed by that service's key.
import Foundation
import JWTKit
public import NestProto
import Synchronization

struct NestClaims: JWTPayload {
  var sub: SubjectClaim
  var role: String
  var exp: ExpirationClaim
  var iss: IssuerClaim
  var aud: AudienceClaim?
  var nbf: NotBeforeClaim?

  func verify(using algorithm: some JWTAlgorithm) async throws {
    try self.exp.verifyNotExpired()
    try self.nbf?.verifyNotBefore()
  }
}

/// Verifies the platform's tokens and signs those its holder may sign.
public struct NestTokens: Sendable {
  /// The issuer of tokens signed with the shared secret.
  public static let issuer = "nest"
  /// HS256 wants a key at least as long as its output.
  public static let minimumSecretBytes = 32

  private enum Trust: Sendable {
    case sharedSecret(JWTKeyCollection)
    case identityProvider(JWKSFile, issuer: String, audience: String, serviceKey: ServiceSigningKey?)
  }
  private let trust: Trust
  /// Tokens already verified, until they expire: a caller sends the same token with every
  /// call, and its signature need not be checked again.
  private let verified = VerifiedTokens()

  /// `secret`: the shared HMAC secret (NEST_AUTH_SECRET), at least 32 bytes.
  public init(secret: String) async throws(TokenError) {
    guard secret.utf8.count >= Self.minimumSecretBytes else {
      throw TokenError(
        "the auth secret must be at least \(Self.minimumSecretBytes) bytes, not \(secret.utf8.count)")
    }
    let keys = JWTKeyCollection()
    await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    self.trust = .sharedSecret(keys)
  }

  /// Tokens of the identity provider `issuer` for `audience`, verified against the public
  /// keys of `jwks`; `serviceKey` signs this service's own calls.
  public init(jwks: JWKSFile, issuer: String, audience: String, serviceKey: ServiceSigningKey?) {
    self.trust = .identityProvider(jwks, issuer: issuer, audience: audience, serviceKey: serviceKey)
  }

  /// A token for `subject` acting as `role`, valid for `lifetime`. Under an identity
  /// provider, only the service key's own identity can be signed for.
  public func sign(subject: String, role: Nest_Common_V1_Role, lifetime: Duration = .seconds(3600)) async throws
    -> String
  {
    switch self.trust {
    case .sharedSecret(let keys):
      guard let claim = role.claim else { throw TokenError("no token for role \(role)") }
      return try await keys.sign(
        NestClaims(
          sub: .init(value: subject), role: claim, exp: .init(value: Date().addingTimeInterval(lifetime.seconds)),
          iss: .init(value: Self.issuer)))
    case .identityProvider(_, let issuer, let audience, let serviceKey):
      guard let serviceKey, role == .service, subject == serviceKey.service else {
        throw TokenError(
          "this service verifies tokens of \(issuer) and signs only its own service token"
            + (serviceKey.map { " (\($0.service))" } ?? " (it has no service key)"))
      }
      return try await serviceKey.key.sign(
        subject: subject, role: role, lifetime: lifetime, issuer: issuer, audience: audience)
    }
  }

  /// The principal a token proves, or why it proves nothing.
  public func verify(_ token: String) async throws(TokenError) -> Principal {
    // Under an identity provider a changed JWKS (a key retired) forgets what was verified.
    let generation: Int
    switch self.trust {
    case .sharedSecret: generation = 0
    case .identityProvider(let jwks, _, _, _): generation = await jwks.generation()
    }
    if let principal = self.verified.principal(token, generation: generation) { return principal }
    let (principal, expiry) = try await self.verifyAnew(token)
    self.verified.remember(token, principal, until: expiry, generation: generation)
    return principal
  }

  private func verifyAnew(_ token: String) async throws(TokenError) -> (Principal, Date) {
    let claims: NestClaims
    var serviceKeyOf: String? = nil
    do {
      switch self.trust {
      case .sharedSecret(let keys):
        claims = try await keys.verify(token, as: NestClaims.self)
        guard claims.iss.value == Self.issuer else { throw TokenError("issuer is not \(Self.issuer)") }
      case .identityProvider(let jwks, let issuer, let audience, _):
        let header = try TokenHeader(token)
        guard let algorithm = header.alg, JWKSFile.algorithms.contains(algorithm) else {
          throw TokenError(
            "alg \(header.alg ?? "(none)") is not accepted: tokens are signed ES256 or EdDSA by a key of the JWKS")
        }
        guard let kid = header.kid else { throw TokenError("the token names no key (kid)") }
        guard let key = await jwks.key(kid) else { throw TokenError("unknown key \(kid)") }
        guard key.algorithm == algorithm else {
          throw TokenError("key \(kid) is \(key.algorithm), the token says \(algorithm)")
        }
        claims = try await key.keys.verify(token, as: NestClaims.self)
        guard claims.iss.value == issuer else { throw TokenError("issuer is not \(issuer)") }
        guard claims.aud?.value.contains(audience) == true else {
          throw TokenError("audience does not include \(audience)")
        }
        serviceKeyOf = ServiceSigningKey.service(ofKeyID: kid)
      }
    } catch let error as TokenError {
      throw error
    } catch let error as JWTError {
      throw TokenError(error.reason ?? "\(error.errorType)")
    } catch {
      throw TokenError("invalid token")
    }
    guard let role = Nest_Common_V1_Role(claim: claims.role) else {
      throw TokenError("unknown role \"\(claims.role)\"")
    }
    guard !claims.sub.value.isEmpty else { throw TokenError("empty subject") }
    if case .identityProvider = self.trust {
      // A service's key proves that service only; a service is proven by its own key only.
      if let service = serviceKeyOf, role != .service || claims.sub.value != service {
        throw TokenError("the key of service \(service) signs only its own service token")
      }
      if serviceKeyOf == nil, role == .service {
        throw TokenError("a service token must be signed by the service's own key")
      }
    }
    return (Principal(subject: claims.sub.value, role: role), claims.exp.value)
  }
}

/// Verified tokens and what they prove, until their expiry (at most `limit` of them: past
/// it, the expired go, and if that is not enough, all).
final class VerifiedTokens: Sendable {
  private struct Entry {
    var principal: Principal
    var expiry: Date
    var generation: Int
  }
  private let entries = Mutex<[String: Entry]>([:])
  private let limit = 4096

  func principal(_ token: String, generation: Int) -> Principal? {
    let now = Date()
    return self.entries.withLock { entries in
      guard let entry = entries[token] else { return nil }
      guard entry.expiry > now, entry.generation == generation else {
        entries[token] = nil
        return nil
      }
      return entry.principal
    }
  }

  func remember(_ token: String, _ principal: Principal, until expiry: Date, generation: Int) {
    let now = Date()
    self.entries.withLock { entries in
      if entries.count >= self.limit {
        entries = entries.filter { $0.value.expiry > now && $0.value.generation == generation }
        if entries.count >= self.limit { entries.removeAll() }
      }
      entries[token] = Entry(principal: principal, expiry: expiry, generation: generation)
    }
  }
}

/// The header fields a token is checked by before its signature.
private struct TokenHeader: Decodable {
  var alg: String?
  var kid: String?

  init(_ token: String) throws(TokenError) {
    guard let encoded = token.split(separator: ".", omittingEmptySubsequences: false).first,
      let bytes = Base64URL.decode(String(encoded)),
      let header = try? JSONDecoder().decode(TokenHeader.self, from: bytes)
    else { throw TokenError("malformed token header") }
    self = header
  }
}

/// The public keys of an identity provider, read from a JWKS file and read again when it
/// changes (checked at most once a second, and at once for a key id it does not know), so
/// that a key added by a rotation is used and a key removed is no longer trusted.
public final class JWKSFile: Sendable {
  /// The algorithms accepted from an identity provider.
  static let algorithms: Set<String> = ["ES256", "EdDSA"]

  struct Key: Sendable {
    var algorithm: String
    var keys: JWTKeyCollection
  }
  private struct State: Sendable {
    var keys: [String: Key] = [:]
    var modified: Date? = nil
    var checked: ContinuousClock.Instant? = nil
    /// Counts the reads that changed the keys.
    var generation = 0
  }

  public let path: String
  private let state: Mutex<State>

  /// Reads `path` once; a file that cannot be read or holds no usable key is an error here,
  /// at start, rather than every call's.
  public init(path: String) async throws(TokenError) {
    self.path = path
    self.state = Mutex(State())
    guard try await self.reload(), !self.state.withLock({ $0.keys.isEmpty }) else {
      throw TokenError("\(path): no ES256 or EdDSA key with a kid")
    }
  }

  /// The key `kid`, re-reading the file first when it may have changed.
  func key(_ kid: String) async -> Key? {
    let now = ContinuousClock.now
    let (known, due) = self.state.withLock { state in
      let due = state.checked.map { now - $0 >= .seconds(1) } ?? true
      return (state.keys[kid], due)
    }
    if due || known == nil, (try? await self.reload()) == true {
      return self.state.withLock { $0.keys[kid] }
    }
    return known
  }

  /// Which keys are in force: changes when a read of the file changed them (checked at most
  /// once a second).
  func generation() async -> Int {
    let now = ContinuousClock.now
    let due = self.state.withLock { state in state.checked.map { now - $0 >= .seconds(1) } ?? true }
    if due { _ = try? await self.reload() }
    return self.state.withLock { $0.generation }
  }

  /// Reads the file again if its modification time moved; false when nothing changed.
  @discardableResult
  private func reload() async throws(TokenError) -> Bool {
    let now = ContinuousClock.now
    let modified = (try? FileManager.default.attributesOfItem(atPath: self.path))?[.modificationDate] as? Date
    let unchanged = self.state.withLock { state in
      defer { state.checked = now }
      return modified != nil && modified == state.modified
    }
    if unchanged { return false }
    guard let data = FileManager.default.contents(atPath: self.path) else {
      throw TokenError("\(self.path): cannot read the JWKS")
    }
    let keys = try await Self.parse(data, path: self.path)
    self.state.withLock { state in
      state.keys = keys
      state.modified = modified
      state.generation += 1
    }
    return true
  }

  static func parse(_ data: Data, path: String) async throws(TokenError) -> [String: Key] {
    struct Entry: Decodable {
      var kid: String?
      var kty: String?
      var crv: String?
      var alg: String?
      var d: String?
    }
    struct Set: Decodable { var keys: [Entry] }
    let entries: [Entry]
    let jwks: JWKS
    do {
      entries = try JSONDecoder().decode(Set.self, from: data).keys
      jwks = try JSONDecoder().decode(JWKS.self, from: data)
    } catch {
      throw TokenError("\(path): not a JWKS (\(error))")
    }
    var keys: [String: Key] = [:]
    for (entry, jwk) in zip(entries, jwks.keys) {
      guard let kid = entry.kid else { continue }
      if entry.d != nil {
        throw TokenError("\(path): key \(kid) holds private key material; a JWKS publishes public keys only")
      }
      let algorithm: String? =
        switch (entry.kty, entry.crv) {
        case ("EC", "P-256"): "ES256"
        case ("OKP", "Ed25519"): "EdDSA"
        default: nil
        }
      guard let algorithm, entry.alg == nil || entry.alg == algorithm else { continue }
      let collection = JWTKeyCollection()
      do {
        var jwk = jwk
        jwk.algorithm = JWK.Algorithm(rawValue: algorithm)
        try await collection.add(jwk: jwk)
      } catch {
        throw TokenError("\(path): key \(kid): \(error)")
      }
      keys[kid] = Key(algorithm: algorithm, keys: collection)
    }
    return keys
  }
}

/// A private key (P-256 or Ed25519, PEM, as `openssl genpkey -algorithm ed25519` writes it)
/// that signs tokens under `keyID`: a service's own key, or a test's identity provider's.
public struct SigningKey: Sendable {
  public let keyID: String
  /// ES256 or EdDSA.
  public let algorithm: String
  /// The public half, as a JWKS entry.
  public let publicJWK: [String: String]
  private let keys: JWTKeyCollection

  public init(pem: String, keyID: String) async throws(TokenError) {
    self.keyID = keyID
    self.keys = JWTKeyCollection()
    let kid = JWKIdentifier(string: keyID)
    var jwk = ["kid": keyID, "use": "sig"]
    if let key = try? ES256PrivateKey(pem: pem), let parameters = key.parameters {
      await self.keys.add(ecdsa: key, kid: kid)
      self.algorithm = "ES256"
      jwk.merge(["kty": "EC", "crv": "P-256", "x": parameters.x, "y": parameters.y]) { $1 }
    } else if let key = try? EdDSA.PrivateKey(pem: pem) {
      await self.keys.add(eddsa: key, kid: kid)
      self.algorithm = "EdDSA"
      jwk.merge(["kty": "OKP", "crv": "Ed25519", "x": Base64URL.encode(key.publicKey.rawRepresentation)]) { $1 }
    } else {
      throw TokenError("key \(keyID): not a PEM P-256 or Ed25519 private key")
    }
    jwk["alg"] = self.algorithm
    self.publicJWK = jwk
  }

  /// A token with these claims, signed with this key.
  public func sign(
    subject: String, role: Nest_Common_V1_Role, lifetime: Duration, issuer: String, audience: String
  ) async throws -> String {
    guard let claim = role.claim else { throw TokenError("no token for role \(role)") }
    return try await self.keys.sign(
      NestClaims(
        sub: .init(value: subject), role: claim, exp: .init(value: Date().addingTimeInterval(lifetime.seconds)),
        iss: .init(value: issuer), aud: .init(value: [audience])),
      kid: JWKIdentifier(string: self.keyID))
  }
}

/// A service's own signing key, known to the others by its key id in the identity
/// provider's JWKS, which names the service: "service:<identity>:<version>".
public struct ServiceSigningKey: Sendable {
  public let service: String
  public let key: SigningKey

  public static func keyID(service: String, version: String) -> String { "service:\(service):\(version)" }

  /// The service a key id names, if it is a service's key.
  public static func service(ofKeyID kid: String) -> String? {
    let parts = kid.split(separator: ":", omittingEmptySubsequences: false)
    guard parts.count >= 3, parts[0] == "service", !parts[1].isEmpty else { return nil }
    return String(parts[1])
  }

  public init(pem: String, keyID: String) async throws(TokenError) {
    guard let service = Self.service(ofKeyID: keyID) else {
      throw TokenError("service key id \"\(keyID)\" must read service:<identity>:<version>")
    }
    self.service = service
    self.key = try await SigningKey(pem: pem, keyID: keyID)
  }
}

extension Duration {
  var seconds: Double { Double(self.components.seconds) + Double(self.components.attoseconds) / 1e18 }
}

public enum Base64URL {
  public static func encode(_ data: Data) -> String {
    data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
      .replacingOccurrences(of: "=", with: "")
  }

  public static func decode(_ text: String) -> Data? {
    var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
    return Data(base64Encoded: base64)
  }
}

public struct TokenError: Error, Hashable, Sendable, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}
