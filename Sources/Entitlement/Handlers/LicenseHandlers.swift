// CheckLicense: a license by id, or the signed bytes the software holds, checked against the
// published key and the instance's state now.
import GRDB
public import GRPCCore
import NestDomain
public import NestProto
import NestServiceKit

extension EntitlementService {
  public func checkLicense(request: Nest_Entitlement_V1_CheckLicenseRequest, context: ServerContext) async throws
    -> Nest_Entitlement_V1_CheckLicenseResponse
  {
    let now = self.clock.nowUnixMs()
    let key = self.signer.publicKey
    let licenseID: String
    switch request.license {
    case .licenseID(let id)?:
      try DomainError.requireNonEmpty(("license_id", id))
      licenseID = id
    case .signedLicense(let signed)?:
      guard signed.keyID == key.keyID else {
        return Licenses.verdict(
          .badSignature, "the license is signed with an unknown key \(signed.keyID)", license: nil)
      }
      let (status, payload) = LicenseVerifier.check(signed, with: key, nowUnixMs: now)
      guard status != .badSignature, let payload else {
        return Licenses.verdict(.badSignature, "the signature does not verify", license: nil, key: key)
      }
      licenseID = payload.licenseID
    case nil:
      throw DomainError.invalid("license", "set license_id or signed_license")
    }
    let found = try await self.store.database.read { try EntitlementStore.instance(licenseID: licenseID, in: $0) }
    guard let instance = found.map({ InstanceRules.present($0, now: now) }),
      case .license(let license)? = instance.access
    else {
      return Licenses.verdict(.unknownLicense, "no license \(licenseID) was issued", license: nil)
    }
    return Licenses.verdict(for: instance, license: license, key: key)
  }
}
