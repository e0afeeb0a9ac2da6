// Calls that carry several items, each done as its own call would do it (RecordSales,
// CreateServiceInstances): the same limits on every such request, and an item refused as the
// status its own call would have answered, so that one item refused leaves the others done.
public import GRDB
public import GRPCCore
public import NestDomain
public import NestProto

public enum BatchItems {
  /// The most items one call takes.
  public static let limit = 256

  /// Checks a batch's keys, one per item in order: 1 to `limit` items, no key twice (an empty
  /// key is the item's own error). `field` names the repeated field, `key` the item's key.
  public static func check(_ keys: [String], field: String, key: String) throws(DomainError) {
    guard (1...Self.limit).contains(keys.count) else {
      throw DomainError.invalid(field, "must hold 1 to \(Self.limit) items")
    }
    var named = Set<String>()
    for (index, value) in keys.enumerated() where !value.isEmpty {
      guard named.insert(value).inserted else {
        throw DomainError.invalid("\(field)[\(index)].\(key)", "\(value) is named twice")
      }
    }
  }

  /// The status code (google.rpc.Code) and message an item's own call would have answered
  /// for `error`, when the error is that item's alone: a rule's refusal, a peer's answer about
  /// the item (NOT_FOUND, say), or a constraint of the database's own that rolled the item back
  /// to its savepoint while the transaction goes on. Nil when it fails the whole call, nothing
  /// of it done: a peer that cannot be reached (UNAVAILABLE, DEADLINE_EXCEEDED), a storage
  /// failure that ended the transaction, cancellation, anything unexpected; the caller
  /// rethrows it. (So a batch's client token never keeps a passing outage as its answer.)
  public static func refusal(_ error: any Error, in db: Database? = nil) -> Refusal? {
    switch error {
    case let refused as DomainError:
      return Refusal(code: Int32(refused.code.rpcCode.rawValue), message: refused.message)
    case let answered as RPCError where !Self.unreachable(answered):
      return Refusal(answered)
    case let failure as DatabaseError
    where failure.resultCode.primaryResultCode == .SQLITE_CONSTRAINT && db?.isInsideTransaction == true:
      let (code, reason) = StorageFailure.status(of: failure)
      return Refusal(code: Int32(code.rawValue), message: "\(reason): \(StorageFailure.name(failure.resultCode))")
    default:
      return nil
    }
  }

  /// Whether `error` says the peer could not be reached (or the call was given up), rather
  /// than answering about the item.
  public static func unreachable(_ error: RPCError) -> Bool {
    [.unavailable, .deadlineExceeded, .cancelled].contains(error.code)
  }

  /// `body` in its own savepoint of `db`'s transaction: its value, or the refusal its own call
  /// would have answered (the savepoint rolled back); anything else is thrown.
  public static func item<T>(in db: Database, _ body: () throws -> T) throws -> Result<T, Refusal> {
    do {
      return .success(try db.savepoint(body))
    } catch {
      guard let refusal = Self.refusal(error, in: db) else { throw error }
      return .failure(refusal)
    }
  }

  /// An item not done: the status its own call would have answered.
  public struct Refusal: Error, Sendable, Equatable {
    public var code: Int32
    public var message: String

    public init(code: Int32, message: String) {
      self.code = code
      self.message = message
    }

    /// A call's error as an item's refusal (a peer from before a batch RPC, called per item).
    public init(_ error: RPCError) {
      self.init(code: Int32(error.code.rawValue), message: error.message)
    }
  }
}

/// A batch response's result for one item, with its refusal (code 0 when done).
public protocol BatchItemResult {
  var errorCode: Int32 { get set }
  var errorMessage: String { get set }
}

extension BatchItemResult {
  /// Not done: the status the item's own call would have answered.
  public mutating func refuse(_ refused: BatchItems.Refusal) {
    self.errorCode = refused.code
    self.errorMessage = refused.message
  }
}

extension Nest_Settlement_V1_SaleResult: BatchItemResult {}
extension Nest_Entitlement_V1_InstanceResult: BatchItemResult {}
