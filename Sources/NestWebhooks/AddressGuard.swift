// The operator's guard against webhooks aimed inside the platform (SSRF): with private
// addresses forbidden, a URL whose host is, or resolves to, a loopback, private, link-local,
// shared, multicast or unspecified address is refused when the webhook is created and again
// before each delivery (the host may resolve differently later).
public import Foundation
public import NestDomain

#if canImport(Glibc)
  import Glibc
#endif

public struct AddressGuard: Sendable {
  public let allowPrivate: Bool

  public init(allowPrivate: Bool) {
    self.allowPrivate = allowPrivate
  }

  /// Refuses (INVALID_ARGUMENT on `field`) a URL that reaches a forbidden address; with
  /// `resolvable`, one whose host has no address either.
  public func check(_ url: URLComponents, field: String, resolvable: Bool = false) async throws(DomainError) {
    guard !self.allowPrivate || resolvable, let host = url.host else { return }
    let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
    let addresses = await Self.resolve(bare)
    if resolvable && addresses.isEmpty {
      throw .invalid([.init(field: field, description: "cannot resolve \(host)")])
    }
    guard !self.allowPrivate else { return }
    if let forbidden = addresses.first(where: Self.isForbidden) {
      throw .invalid([
        .init(
          field: field,
          description:
            "\(host) is \(forbidden == bare ? "" : "resolves to ")\(forbidden), a private address (forbidden by the operator)"
        )
      ])
    }
  }

  /// The host's addresses as text (the host itself when it is an address).
  static func resolve(_ host: String) async -> [String] {
    await withCheckedContinuation { continuation in
      DispatchQueue.global().async {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0 else {
          continuation.resume(returning: [])
          return
        }
        defer { freeaddrinfo(result) }
        var addresses: [String] = []
        var cursor = result
        while let info = cursor {
          var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
          if getnameinfo(
            info.pointee.ai_addr, info.pointee.ai_addrlen, &text, socklen_t(text.count), nil, 0, NI_NUMERICHOST) == 0
          {
            addresses.append(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
          }
          cursor = info.pointee.ai_next
        }
        continuation.resume(returning: addresses)
      }
    }
  }

  /// Whether an address (as text) is one no webhook may reach.
  public static func isForbidden(_ address: String) -> Bool {
    var v4 = in_addr()
    if inet_pton(AF_INET, address, &v4) == 1 {
      return Self.isForbidden(v4: UInt32(bigEndian: v4.s_addr))
    }
    var v6 = in6_addr()
    guard inet_pton(AF_INET6, address, &v6) == 1 else { return true }
    let bytes = withUnsafeBytes(of: &v6) { Array($0) }
    if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {  // ::ffff:a.b.c.d
      return Self.isForbidden(v4: bytes[12...].reduce(0) { $0 << 8 | UInt32($1) })
    }
    if bytes[0..<15].allSatisfy({ $0 == 0 }) { return true }  // :: and ::1
    if bytes[0] & 0xFE == 0xFC { return true }  // fc00::/7, unique local
    if bytes[0] == 0xFE && bytes[1] & 0xC0 == 0x80 { return true }  // fe80::/10, link-local
    return bytes[0] == 0xFF  // multicast
  }

  static func isForbidden(v4 address: UInt32) -> Bool {
    let ranges: [(UInt32, Int)] = [
      (0x0000_0000, 8), (0x0A00_0000, 8), (0x6440_0000, 10), (0x7F00_0000, 8), (0xA9FE_0000, 16),
      (0xAC10_0000, 12), (0xC000_0000, 24), (0xC0A8_0000, 16), (0xC612_0000, 15), (0xE000_0000, 4),
      (0xF000_0000, 4),
    ]
    return ranges.contains { network, bits in address >> (32 - bits) == network >> (32 - bits) }
  }
}
