import Catalog
import Foundation
import GRDB
import GRPCCore
import NestDomain
import NestProto
import NestServiceKit
import NestTransport
import Testing

private func store() throws -> (CatalogStore, String) {
  let path = FileManager.default.temporaryDirectory.appendingPathComponent("catalog-\(UUID()).sqlite").path
  return (CatalogStore(database: try ServiceDatabase.open(path: path, migrations: CatalogStore.migrations)), path)
}

private func service(
  _ id: String, owner: String, status: Nest_Catalog_V1_ServiceStatus = .online,
  type: Nest_Common_V1_ServiceType = .private, base: String = "", distributable: Bool = false
)
  -> Nest_Catalog_V1_Service
{
  .with {
    $0.id = id
    $0.ownerID = owner
    $0.name = "Service \(id) ✓"
    $0.type = type
    $0.status = status
    $0.baseServiceID = base
    $0.distributable = distributable
  }
}

@Suite("Catalog store")
struct CatalogStoreTests {
  @Test("services, versions and products come back as they were saved, and updates replace them")
  func roundTrip() throws {
    let (store, path) = try store()
    defer { try? FileManager.default.removeItem(atPath: path) }
    var a = service("a", owner: "isv-1", status: .draft)
    let version = Nest_Catalog_V1_ServiceVersion.with {
      $0.id = "a-v1"
      $0.serviceID = "a"
      $0.number = 1
      $0.status = .draft
      $0.parameterSets = [
        .with {
          $0.name = "small"; $0.parameters = ["cpu": "2"]
        }
      ]
    }
    let product = Nest_Catalog_V1_Product.with {
      $0.id = "p-a"
      $0.serviceID = "a"
      $0.ownerID = "isv-1"
      $0.status = .listed
      $0.plans = [
        .with {
          $0.planID = "monthly";
          $0.unitPrice = .with {
            $0.currency = "USD"; $0.amountMinor = 4_900
          }
        }
      ]
    }
    try store.database.write { db in
      try CatalogStore.save(a, in: db)
      try CatalogStore.save(version, in: db)
      try CatalogStore.save(product, in: db)
    }
    a.status = .online
    a.defaultVersionID = "a-v1"
    try store.database.write { try CatalogStore.save(a, in: $0) }
    let (loaded, versions, loadedProduct, next) = try store.database.readNow { db in
      (
        try CatalogStore.service("a", in: db), try CatalogStore.versions(ofService: "a", in: db),
        try CatalogStore.product(ofService: "a", in: db), try CatalogStore.nextVersionNumber(ofService: "a", in: db)
      )
    }
    #expect(loaded == a)
    #expect(versions == [version])
    #expect(loadedProduct == product)
    #expect(next == 2)
    #expect(try store.database.readNow { try CatalogStore.service("missing", in: $0) } == nil)
  }

  @Test("filters narrow the list, others' drafts stay hidden, and pages continue where they ended")
  func listing() throws {
    let (store, path) = try store()
    defer { try? FileManager.default.removeItem(atPath: path) }
    try store.database.write { db in
      for index in 0..<7 {
        try CatalogStore.save(service("isv1-\(index)", owner: "isv-1", distributable: index % 2 == 0), in: db)
      }
      try CatalogStore.save(service("isv2-draft", owner: "isv-2", status: .draft), in: db)
      try CatalogStore.save(service("isv2-online", owner: "isv-2", type: .fullyManaged), in: db)
      try CatalogStore.save(service("b", owner: "dist-1", base: "isv1-0"), in: db)
    }
    func list(_ filter: ServiceFilter, size: Int32 = 0, token: String = "") throws -> ([String], String) {
      let page = try PageQuery(
        .with {
          $0.pageSize = size; $0.pageToken = token
        })
      let result = try store.database.readNow { try CatalogStore.services(filter, page: page, in: $0) }
      return (result.services.map(\.id), result.nextPageToken)
    }
    var byOwner = ServiceFilter()
    byOwner.ownerID = "isv-1"
    byOwner.distributable = true
    #expect(try list(byOwner).0 == ["isv1-0", "isv1-2", "isv1-4", "isv1-6"])
    var hidden = ServiceFilter()
    hidden.visibleToNonOwner = "dist-1"
    #expect(try !list(hidden).0.contains("isv2-draft"))
    var own = ServiceFilter()
    own.visibleToNonOwner = "isv-2"
    #expect(try list(own).0.contains("isv2-draft"))
    var derived = ServiceFilter()
    derived.baseServiceID = "isv1-0"
    #expect(try list(derived).0 == ["b"])
    var managed = ServiceFilter()
    managed.type = .fullyManaged
    #expect(try list(managed).0 == ["isv2-online"])
    // Pages of 4 over 10 services: 4, 4, 2, and no token after the last.
    var seen: [String] = []
    var token = ""
    var pages = 0
    repeat {
      let (ids, next) = try list(ServiceFilter(), size: 4, token: token)
      seen += ids
      token = next
      pages += 1
    } while !token.isEmpty
    #expect(pages == 3)
    #expect(seen.count == 10)
    #expect(Set(seen).count == 10)
  }

  @Test("page sizes out of range and foreign tokens are INVALID_ARGUMENT naming the field")
  func pageValidation() {
    for (size, token, field) in [
      (Int32(-1), "", "page.page_size"), (501, "", "page.page_size"), (10, "xyz", "page.page_token"),
    ] {
      do {
        _ = try PageQuery(
          .with {
            $0.pageSize = size; $0.pageToken = token
          })
        Issue.record("accepted \(size) \(token)")
      } catch {
        #expect(error.code == .invalidArgument)
        #expect(error.violations.map(\.field) == [field])
      }
    }
    let defaultPage = try? PageQuery(nil)
    #expect(defaultPage?.size == PageQuery.defaultSize)
  }
}
