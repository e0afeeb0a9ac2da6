// HS256 tokens with the claims of docs/design.md §4: sub, role, exp, iss = "nest".
import Foundation
import JWTKit
public import NestProto

struct NestClaims: JWTPayload {
  var sub: SubjectClaim
  var role: String
  var exp: ExpirationClaim
  var iss: IssuerClaim

  func verify(using algorithm: some JWTAlgorithm) async throws {
    try self.exp.verifyNotExpired()
    guard self.iss.value == NestTokens.issuer else {
      throw JWTError.claimVerificationFailure(failedClaim: self.iss, reason: "issuer is not \(NestTokens.issuer)")
    }
  }
}

/// Signs and verifies the platform's tokens with one shared secret.
public struct NestTokens: Sendable {
  public static let issuer = "nest"
  private let keys: JWTKeyCollection

  /// HS256 wants a key at least as long as its output.
  public static let minimumSecretBytes = 32

  /// `secret`: the shared HMAC secret (NEST_AUTH_SECRET), at least 32 bytes.
  public init(secret: String) async throws(TokenError) {
    guard secret.utf8.count >= Self.minimumSecretBytes else {
      throw TokenError(
        "the auth secret must be at least \(Self.minimumSecretBytes) bytes, not \(secret.utf8.count)")
    }
    self.keys = JWTKeyCollection()
    await self.keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
  }

  /// A token for `subject` acting as `role`, valid for `lifetime`.
  public func sign(subject: String, role: Nest_Common_V1_Role, lifetime: Duration = .seconds(3600)) async throws
    -> String
  {
    guard let claim = role.claim else { throw TokenError("no token for role \(role)") }
    let seconds = Double(lifetime.components.seconds) + Double(lifetime.components.attoseconds) / 1e18
    return try await self.keys.sign(
      NestClaims(
        sub: .init(value: subject), role: claim, exp: .init(value: Date().addingTimeInterval(seconds)),
        iss: .init(value: Self.issuer)))
  }

  /// The principal a token proves, or why it proves nothing.
  public func verify(_ token: String) async throws(TokenError) -> Principal {
    let claims: NestClaims
    do {
      claims = try await self.keys.verify(token, as: NestClaims.self)
    } catch let error as JWTError {
      throw TokenError(error.reason ?? "\(error.errorType)")
    } catch {
      throw TokenError("invalid token")
    }
    guard let role = Nest_Common_V1_Role(claim: claims.role) else {
      throw TokenError("unknown role \"\(claims.role)\"")
    }
    guard !claims.sub.value.isEmpty else { throw TokenError("empty subject") }
    return Principal(subject: claims.sub.value, role: role)
  }
}

public struct TokenError: Error, Hashable, Sendable, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}
