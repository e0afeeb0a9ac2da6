// The five executables configured for an identity provider (--auth-jwks-file): they hold
// no secret; users' tokens come from the provider (keys made by the test, JWKS in a file);
// each service signs its calls to the others with its own key. A scenario-3 sale runs
// through; forged, misdirected and downgraded tokens are UNAUTHENTICATED; a rotation keeps
// the tokens of the old key working until they expire.
import Foundation
import GRPCCore
import JWTKit
import NestAuth
import NestProtoTesting
import NestScenarios
import NestTestKit
import Testing

@Suite("Identity from the platform's identity provider", .serialized, .timeLimit(.minutes(3)))
struct IdentityProviderTests {
  static func withPlatform(
    _ body: (NestTestPlatform, TestIdentityProvider) async throws -> Void
  ) async throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("idp-\(UUID())")
    defer { try? FileManager.default.removeItem(at: folder) }
    let provider = try await TestIdentityProvider(directory: folder)
    let platform = try await NestTestPlatform.start(.processes(identityProvider: provider))
    do {
      try await body(platform, provider)
    } catch {
      await platform.stop()
      throw error
    }
    await platform.stop()
  }

  /// What catalog answers a ListProducts call carrying `token`: nil for OK.
  static func answer(_ platform: NestTestPlatform, _ token: String) async -> RPCError? {
    do {
      _ = try await platform.withClient(.catalog, token: token) { try await $0.catalog.listProducts(.init()) }
      return nil
    } catch let error as RPCError {
      return error
    } catch {
      return RPCError(code: .unknown, message: "\(error)")
    }
  }

  @Test("a scenario-3 sale with the provider's tokens; the services call each other with their own keys")
  func sale() async throws {
    try await Self.withPlatform { platform, provider in
      let marketplace = platform.marketplace
      let setup = try await marketplace.setUp(.scenario3, parties: ScenarioParties(.scenario3, run: "idp"))
      let order = try await marketplace.buy(setup.parties.customer, product: setup.productID)
      let done = try await marketplace.waitForOrder(order.id)
      #expect(done.order?.status == .fulfilled)
      // Both sales reached settlement (marketplace-order's RecordSale calls, signed with its
      // key, were accepted): every party's balance is the scenario's arithmetic.
      let expected = marketplace.prices.balances(.scenario3, parties: setup.parties, quantity: 1, periods: 1)
      var actual: [Int64] = []
      let settled = try await eventually(timeout: .seconds(30)) {
        actual = []
        for (kind, account, _) in expected { actual.append(try await marketplace.balance(kind, account)) }
        return actual == expected.map(\.2)
      }
      #expect(settled, "balances \(actual), expected \(expected.map(\.2))")
      // The services hold no secret: none was given one, and none can sign a user's token.
      for service in NestServiceName.allCases {
        let log = try String(contentsOf: platform.processes!.log(service), encoding: .utf8)
        #expect(!log.contains("invalid token"), "\(service): \(log.suffix(500))")
      }
      let configured = try await Identity.identityProvider(provider.configuration(for: .order)).tokens(for: .order)
      await #expect(throws: TokenError.self) { _ = try await configured.sign(subject: "cust-1", role: .customer) }
      await #expect(throws: TokenError.self) { _ = try await configured.sign(subject: "settlement", role: .service) }
      let own = try await configured.sign(subject: "marketplace-order", role: .service)
      #expect(try await configured.verify(own) == Principal(subject: "marketplace-order", role: .service))
    }
  }

  @Test("another key, wrong audience or issuer, alg none, HS256, a service key or role posing: UNAUTHENTICATED")
  func refused() async throws {
    try await Self.withPlatform { platform, provider in
      #expect(await Self.answer(platform, try await provider.sign(subject: "cust-1", role: .customer)) == nil)

      var forged: [String: String] = [:]
      // Signed by a key the provider never published, under the provider's own kid and another.
      let stranger = try await SigningKey(pem: TestIdentityProvider.newKey(.es256), keyID: provider.currentKeyID)
      forged["another key, the provider's kid"] = try await stranger.sign(
        subject: "cust-1", role: .customer, lifetime: .seconds(60), issuer: provider.issuer,
        audience: provider.audience)
      let unknown = try await SigningKey(pem: TestIdentityProvider.newKey(.eddsa), keyID: "idp-unknown")
      forged["another key, an unknown kid"] = try await unknown.sign(
        subject: "cust-1", role: .customer, lifetime: .seconds(60), issuer: provider.issuer,
        audience: provider.audience)
      forged["wrong audience"] = try await provider.sign(subject: "cust-1", role: .customer, audience: "billing")
      forged["wrong issuer"] = try await provider.sign(subject: "cust-1", role: .customer, issuer: "https://evil.test")
      // alg none: the provider's claims, no signature.
      let valid = try await provider.sign(subject: "cust-1", role: .customer)
      let payload = valid.split(separator: ".")[1]
      let noneHeader = Base64URL.encode(Data(#"{"alg":"none","kid":"\#(provider.currentKeyID)","typ":"JWT"}"#.utf8))
      forged["alg none"] = "\(noneHeader).\(payload)."
      // HS256 with the one secret the platform would have had.
      let hmac = JWTKeyCollection()
      await hmac.add(hmac: HMACKey(from: try platform.processes!.secret()), digestAlgorithm: .sha256)
      let claims = try await hmac.unverified(valid, as: PlainClaims.self)
      forged["HS256"] = try await hmac.sign(claims, kid: JWKIdentifier(string: provider.currentKeyID))
      // A service's key (say one stolen from settlement) signing a customer's token.
      let settlementKey = try await SigningKey(
        pem: String(contentsOf: provider.serviceKeyFile(.settlement), encoding: .utf8),
        keyID: TestIdentityProvider.serviceKeyID(.settlement))
      forged["a service key signing a customer token"] = try await settlementKey.sign(
        subject: "cust-1", role: .customer, lifetime: .seconds(60), issuer: provider.issuer,
        audience: provider.audience)
      forged["a service key signing another service's token"] = try await settlementKey.sign(
        subject: "marketplace-order", role: .service, lifetime: .seconds(60), issuer: provider.issuer,
        audience: provider.audience)
      // The provider's key claiming a service identity.
      forged["the provider's key for role service"] = try await provider.sign(
        subject: "marketplace-order", role: .service)
      forged["expired"] = try await provider.sign(subject: "cust-1", role: .customer, lifetime: .seconds(-60))

      for (what, token) in forged.sorted(by: { $0.key < $1.key }) {
        let error = await Self.answer(platform, token)
        #expect(error?.code == .unauthenticated, "\(what): \(String(describing: error))")
        print("\(what): \(error.map { "\($0.code): \($0.message)" } ?? "accepted")")
      }
    }
  }

  @Test("a rotation: tokens of the old key keep working until they expire, the new key's at once")
  func rotation() async throws {
    try await Self.withPlatform { platform, provider in
      let first = provider.currentKeyID
      // Long enough to outlast the steps below on a loaded machine (a 4 s token expired
      // before its first use once, with the other suites' processes running beside it).
      let before = try await provider.sign(subject: "cust-rot", role: .customer, lifetime: .seconds(12))
      let second = try await provider.rotate(to: .eddsa)
      #expect(first != second)
      let after = try await provider.sign(subject: "cust-rot", role: .customer)
      #expect(await Self.answer(platform, after) == nil)
      let old = await Self.answer(platform, before)
      #expect(old == nil, "the old key's token after the rotation: \(String(describing: old))")
      // The old token lapses at its expiry, not before and not because of the rotation.
      let lapsed = try await eventually(timeout: .seconds(40)) {
        await Self.answer(platform, before)?.code == .unauthenticated
      }
      #expect(lapsed)
      #expect(await Self.answer(platform, after) == nil)
      // Retired: a token of the first key that has not expired is refused once the JWKS drops it.
      let late = try await provider.sign(subject: "cust-rot", role: .customer, keyID: first)
      #expect(await Self.answer(platform, late) == nil)
      try provider.retire(first)
      let dropped = try await eventually(timeout: .seconds(20)) {
        await Self.answer(platform, late)?.code == .unauthenticated
      }
      #expect(dropped)
    }
  }
}

/// The claims of a token, as a forger copies them.
struct PlainClaims: JWTPayload {
  var sub: SubjectClaim
  var role: String
  var exp: ExpirationClaim
  var iss: IssuerClaim
  var aud: AudienceClaim
  func verify(using algorithm: some JWTAlgorithm) async throws {}
}
