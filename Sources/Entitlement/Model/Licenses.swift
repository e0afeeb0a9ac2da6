// Licenses for private instances: an encoded LicensePayload signed with Ed25519. The
// software checks one offline with the published public key: verify the signature over
// the exact payload bytes, then the expiry.
import Crypto
import Foundation
public import NestProto

public struct LicenseSigner: Sendable {
  public static let algorithm = "Ed25519"
  private let key: Curve25519.Signing.PrivateKey
  public let keyID: String

  /// A signer from a 32-byte raw private key (kept by the entitlement service).
  public init(rawPrivateKey: [UInt8], keyID: String) throws {
    self.key = try Curve25519.Signing.PrivateKey(rawRepresentation: rawPrivateKey)
    self.keyID = keyID
  }

  /// A new random key, for tests and first start.
  public static func generate(keyID: String) throws -> LicenseSigner {
    try LicenseSigner(rawPrivateKey: Array(Curve25519.Signing.PrivateKey().rawRepresentation), keyID: keyID)
  }

  public var rawPrivateKey: [UInt8] { Array(self.key.rawRepresentation) }

  /// What to publish so that software can verify licenses offline.
  public var publicKey: Nest_Entitlement_V1_LicenseSigningKey {
    .with {
      $0.keyID = self.keyID
      $0.algorithm = Self.algorithm
      $0.publicKey = Array(self.key.publicKey.rawRepresentation)
    }
  }

  public func sign(_ payload: Nest_Entitlement_V1_LicensePayload) throws -> Nest_Entitlement_V1_SignedLicense {
    let bytes = try payload.serializedBytes()
    let signature = try self.key.signature(for: bytes)
    return .with {
      $0.payload = bytes
      $0.signature = Array(signature)
      $0.keyID = self.keyID
    }
  }
}

public enum LicenseVerifier {
  /// VALID, EXPIRED or BAD_SIGNATURE, using only the published key: what the software runs.
  public static func check(
    _ license: Nest_Entitlement_V1_SignedLicense, with key: Nest_Entitlement_V1_LicenseSigningKey, nowUnixMs: Int64
  ) -> (Nest_Entitlement_V1_LicenseStatus, Nest_Entitlement_V1_LicensePayload?) {
    guard key.algorithm == LicenseSigner.algorithm, license.keyID == key.keyID,
      let publicKey = try? Curve25519.Signing.PublicKey(rawRepresentation: key.publicKey),
      publicKey.isValidSignature(license.signature, for: license.payload),
      let payload = try? Nest_Entitlement_V1_LicensePayload(serializedBytes: license.payload)
    else { return (.badSignature, nil) }
    if payload.expiresAtUnixMs != 0 && nowUnixMs >= payload.expiresAtUnixMs { return (.expired, payload) }
    return (.valid, payload)
  }
}

/// The licenses of private instances, as entitlement issues and checks them.
public enum Licenses {
  /// A license for `instance` (issued anew on renewal, same id): its payload signed.
  public static func issue(
    for instance: Nest_Entitlement_V1_ServiceInstance, id: String, signer: LicenseSigner, now: Int64
  ) throws -> Nest_Entitlement_V1_License {
    let payload = Nest_Entitlement_V1_LicensePayload.with {
      $0.licenseID = id
      $0.instanceID = instance.id
      $0.customerID = instance.customerID
      $0.serviceID = instance.serviceID
      $0.baseServiceID = instance.baseServiceID
      $0.quantity = instance.quantity
      $0.issuedAtUnixMs = now
      $0.expiresAtUnixMs = instance.expiresAtUnixMs
      $0.trial = instance.subscription?.trial ?? false
      $0.versionID = instance.versionID
    }
    let signed = try signer.sign(payload)
    return .with {
      $0.licenseID = id
      $0.instanceID = instance.id
      $0.customerID = instance.customerID
      $0.serviceID = instance.serviceID
      $0.issuedAtUnixMs = now
      $0.expiresAtUnixMs = instance.expiresAtUnixMs
      $0.payload = signed.payload
      $0.signature = signed.signature
      $0.keyID = signed.keyID
      $0.algorithm = LicenseSigner.algorithm
      $0.trial = payload.trial
    }
  }

  /// What CheckLicense answers for an issued license, from its instance's state.
  public static func verdict(
    for instance: Nest_Entitlement_V1_ServiceInstance, license: Nest_Entitlement_V1_License,
    key: Nest_Entitlement_V1_LicenseSigningKey
  ) -> Nest_Entitlement_V1_CheckLicenseResponse {
    switch instance.status {
    case .released: verdict(.released, "the instance was released", license: license, key: key)
    case .suspended: verdict(.suspended, "the instance is suspended", license: license, key: key)
    case .expired: verdict(.expired, "the license expired", license: license, key: key)
    default: verdict(.valid, "", license: license, key: key)
    }
  }

  public static func verdict(
    _ status: Nest_Entitlement_V1_LicenseStatus, _ reason: String, license: Nest_Entitlement_V1_License?,
    key: Nest_Entitlement_V1_LicenseSigningKey? = nil
  ) -> Nest_Entitlement_V1_CheckLicenseResponse {
    .with {
      $0.valid = status == .valid
      $0.status = status
      $0.reason = reason
      $0.expiresAtUnixMs = license?.expiresAtUnixMs ?? 0
      $0.license = license
      $0.signingKey = key
    }
  }
}
