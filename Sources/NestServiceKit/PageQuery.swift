// Paging of every List RPC (nest.common.v1.PageRequest): a validated size and an opaque
// token that continues after the last row returned.
public import NestDomain
public import NestProto

/// A page request after validation: how many, and after which row.
public struct PageQuery: Sendable, Hashable {
  public static let defaultSize = 50
  public static let maxSize = 500

  public var size: Int
  public var after: Int64

  /// page_size 0 means the default; tokens are the opaque ones this store hands out.
  public init(_ page: Nest_Common_V1_PageRequest?) throws(DomainError) {
    let requested = Int(page?.pageSize ?? 0)
    var violations: [(String, String)] = []
    if requested < 0 || requested > Self.maxSize {
      violations.append(("page.page_size", "must be between 0 and \(Self.maxSize)"))
    }
    var after: Int64 = 0
    if let token = page?.pageToken, !token.isEmpty {
      if token.hasPrefix("r"), let value = Int64(token.dropFirst()), value >= 0 {
        after = value
      } else {
        violations.append(("page.page_token", "is not a token this service issued"))
      }
    }
    guard violations.isEmpty else {
      throw .invalid(violations.map { .init(field: $0.0, description: $0.1) })
    }
    self.size = requested == 0 ? Self.defaultSize : requested
    self.after = after
  }

  /// The token of the page after the row with `rowid`.
  public static func token(after rowid: Int64) -> String { "r\(rowid)" }
}

/// The client side of paging.
public enum Pages {
  /// Every item of a paged List RPC: `fetch` gets a page token ("" for the first page) and
  /// returns that page's items and the next token ("" after the last page).
  public static func all<Item>(
    isolation: isolated (any Actor)? = #isolation, _ fetch: (String) async throws -> ([Item], String)
  ) async throws -> [Item] {
    var items: [Item] = []
    var token = ""
    repeat {
      let (page, next) = try await fetch(token)
      items += page
      token = next
    } while !token.isEmpty
    return items
  }
}
