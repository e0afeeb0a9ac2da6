// The events service: the platform's feed of what happened, published to by the four
// services, read by each party for what it may read, and pushed to the parties' webhooks
// (WebhookDispatcher). Who may call what is declared in nest/events/v1/events.proto.
import Foundation
import GRDB
public import GRPCCore
import NestAuth
public import NestDomain
public import NestProto
public import NestServiceKit
public import NestWebhooks

public struct EventsService: Nest_Events_V1_EventsService.SimpleServiceProtocol {
  let store: EventsStore
  let clock: NestClock
  let dispatcher: WebhookDispatcher
  let guardAddresses: AddressGuard

  public init(store: EventsStore, clock: NestClock, dispatcher: WebhookDispatcher, guardAddresses: AddressGuard) {
    self.store = store
    self.clock = clock
    self.dispatcher = dispatcher
    self.guardAddresses = guardAddresses
  }

  public static let definition = ServiceDefinition(name: .events, peers: [], migrations: EventsStore.migrations) {
    environment in
    let settings = environment.configuration.settings
    let store = EventsStore(database: environment.database)
    let addressGuard = try await AddressGuard.read("webhook", from: settings)
    let dispatcher = WebhookDispatcher(
      store: store, logger: environment.logger, clock: environment.clock, addressGuard: addressGuard,
      policy: .init(
        retry: try await EndpointRetryPolicy.read("webhook", from: settings),
        retention: .seconds(
          3600 * (try await settings.int("event.retention.hours", default: 720, in: 1...87_600)))))
    let service = EventsService(
      store: store, clock: environment.clock, dispatcher: dispatcher, guardAddresses: addressGuard)
    return ServiceParts(rpcServices: [service], background: [dispatcher])
  }

  // MARK: Publishing

  public func publishEvents(request: Nest_Events_V1_PublishEventsRequest, context: ServerContext) async throws
    -> Nest_Events_V1_PublishEventsResponse
  {
    let caller = try Access.forCall().caller
    guard request.events.count <= 500 else {
      throw DomainError.invalid([.init(field: "events", description: "at most 500 events per call")])
    }
    var violations: [DomainError.Violation] = []
    for (index, event) in request.events.enumerated() {
      for (field, empty) in [
        ("id", event.id.isEmpty), ("type", event.type.isEmpty), ("subject", event.subject.isEmpty),
      ]
      where empty {
        violations.append(.init(field: "events[\(index)].\(field)", description: "is required"))
      }
      if event.sequence < 1 {
        violations.append(.init(field: "events[\(index)].sequence", description: "must be 1 or more"))
      }
      if event.source != caller.subject {
        violations.append(.init(field: "events[\(index)].source", description: "must be the calling service"))
      }
    }
    guard violations.isEmpty else { throw DomainError.invalid(violations) }
    let now = self.clock.nowUnixMs()
    let accepted = try await self.store.database.write { db in
      try request.events.reduce(0) { count, event in count + (try EventsStore.insert(event, now: now, in: db) ? 1 : 0) }
    }
    self.dispatcher.signal()
    return .with {
      $0.accepted = UInt32(accepted)
      $0.duplicates = UInt32(request.events.count - accepted)
    }
  }

  // MARK: The feed

  /// Who the caller reads as: nil (everything) for the operator.
  static func reader(_ caller: Principal) -> (role: Int32, accountID: String)? {
    caller.role == .operator ? nil : (caller.role.rawValue, caller.subject)
  }

  public func listEvents(request: Nest_Events_V1_ListEventsRequest, context: ServerContext) async throws
    -> Nest_Events_V1_ListEventsResponse
  {
    let caller = try Access.forCall().caller
    var violations: [DomainError.Violation] = []
    let after = request.after.isEmpty ? 0 : Int64(request.after) ?? -1
    if after < 0 { violations.append(.init(field: "after", description: "is not a cursor of this feed")) }
    if request.pageSize < 0 || request.pageSize > 500 {
      violations.append(.init(field: "page_size", description: "must be between 0 and 500"))
    }
    guard violations.isEmpty else { throw DomainError.invalid(violations) }
    try EventTypes.check(request.types, field: "types")
    let events = try await self.store.database.read {
      try EventsStore.events(
        after: after, reader: Self.reader(caller), types: request.types, subject: request.subject,
        limit: request.pageSize == 0 ? 100 : Int(request.pageSize), in: $0)
    }
    return .with {
      $0.events = events
      $0.cursor = events.last?.cursor ?? request.after
    }
  }

  // MARK: Webhooks

  public func createWebhook(request: Nest_Events_V1_CreateWebhookRequest, context: ServerContext) async throws
    -> Nest_Events_V1_CreateWebhookResponse
  {
    let caller = try Access.forCall().caller
    let url = try WebhookRules.check(url: request.url)
    try EventTypes.check(request.types, field: "types")
    try await self.guardAddresses.check(url, field: "url")
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      try ClientTokens.once(
        db, caller: "\(caller.role.rawValue):\(caller.subject)", method: "CreateWebhook", token: request.clientToken,
        request: request, nowUnixMs: now
      ) {
        let stored = EventsStore.StoredWebhook(
          webhook: .with {
            $0.id = Identifiers.new("wh")
            $0.owner = .with {
              $0.role = caller.role
              $0.accountID = caller.subject
            }
            $0.url = request.url
            $0.types = Array(Set(request.types)).sorted()
            $0.status = .active
            $0.createdAtUnixMs = now
            $0.updatedAtUnixMs = now
          }, secret: WebhookRules.newSecret(), previousSecret: "", failingSinceUnixMs: 0)
        try EventsStore.save(stored, in: db)
        return .with {
          $0.webhook = stored.webhook
          $0.secret = stored.secret
        }
      }
    }
  }

  public func listWebhooks(request: Nest_Events_V1_ListWebhooksRequest, context: ServerContext) async throws
    -> Nest_Events_V1_ListWebhooksResponse
  {
    let caller = try Access.forCall().caller
    let page = try PageQuery(request.page)
    let result = try await self.store.database.read {
      try EventsStore.webhooks(owner: Self.reader(caller), page: page, in: $0)
    }
    return .with {
      $0.webhooks = result.items
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }

  /// The webhook the request names, if the caller may act on it.
  static func webhook(_ id: String, _ access: Access, in db: Database) throws -> EventsStore.StoredWebhook {
    try DomainError.requireNonEmpty(("webhook_id", id))
    let stored = try EventsStore.webhook(id, in: db)
    _ = try access.authorize(stored?.webhook, notFound: .notFound("webhook", id, field: "webhook_id"))
    return stored!
  }

  public func deleteWebhook(request: Nest_Events_V1_DeleteWebhookRequest, context: ServerContext) async throws
    -> Nest_Events_V1_DeleteWebhookResponse
  {
    let access = try Access.forCall()
    try await self.store.database.write { db in
      _ = try Self.webhook(request.webhookID, access, in: db)
      try EventsStore.delete(webhook: request.webhookID, in: db)
    }
    return .init()
  }

  public func rotateWebhookSecret(request: Nest_Events_V1_RotateWebhookSecretRequest, context: ServerContext)
    async throws -> Nest_Events_V1_RotateWebhookSecretResponse
  {
    let access = try Access.forCall()
    guard (0...7 * 86_400).contains(request.overlapSeconds) else {
      throw DomainError.invalid([.init(field: "overlap_seconds", description: "must be between 0 and 604800")])
    }
    let now = self.clock.nowUnixMs()
    return try await self.store.database.write { db in
      var stored = try Self.webhook(request.webhookID, access, in: db)
      stored.previousSecret = stored.secret
      stored.secret = WebhookRules.newSecret()
      stored.webhook.previousSecretExpiresAtUnixMs =
        now + (request.overlapSeconds == 0 ? 86_400 : request.overlapSeconds) * 1000
      stored.webhook.updatedAtUnixMs = now
      try EventsStore.save(stored, in: db)
      return .with {
        $0.webhook = stored.webhook
        $0.secret = stored.secret
      }
    }
  }

  /// The webhook moved to `status` (ACTIVE again: a clean slate of failures).
  func setStatus(_ id: String, _ status: Nest_Events_V1_WebhookStatus) async throws -> Webhook {
    let access = try Access.forCall()
    let now = self.clock.nowUnixMs()
    let webhook = try await self.store.database.write { db in
      var stored = try Self.webhook(id, access, in: db)
      stored.webhook.status = status
      stored.webhook.updatedAtUnixMs = now
      if status == .active {
        stored.webhook.disabledReason = ""
        stored.failingSinceUnixMs = 0
      }
      try EventsStore.save(stored, in: db)
      return stored.webhook
    }
    self.dispatcher.signal()
    return webhook
  }

  public func pauseWebhook(request: Nest_Events_V1_PauseWebhookRequest, context: ServerContext) async throws
    -> Nest_Events_V1_PauseWebhookResponse
  {
    let webhook = try await self.setStatus(request.webhookID, .paused)
    return .with { $0.webhook = webhook }
  }

  public func resumeWebhook(request: Nest_Events_V1_ResumeWebhookRequest, context: ServerContext) async throws
    -> Nest_Events_V1_ResumeWebhookResponse
  {
    let webhook = try await self.setStatus(request.webhookID, .active)
    return .with { $0.webhook = webhook }
  }

  public func redeliverEvent(request: Nest_Events_V1_RedeliverEventRequest, context: ServerContext) async throws
    -> Nest_Events_V1_RedeliverEventResponse
  {
    let access = try Access.forCall()
    try DomainError.requireNonEmpty(("webhook_id", request.webhookID), ("event_id", request.eventID))
    let now = self.clock.nowUnixMs()
    let delivery = try await self.store.database.write { db in
      let stored = try Self.webhook(request.webhookID, access, in: db)
      let owner = stored.webhook.owner ?? .init()
      guard let event = try EventsStore.event(id: request.eventID, in: db),
        EventVisibility.mayRead(role: owner.role, accountID: owner.accountID, parties: event.parties)
      else {
        throw DomainError.notFound("event", request.eventID, field: "event_id")
      }
      let id = try EventsStore.queue(
        webhookID: stored.webhook.id, eventSeq: Int64(event.cursor) ?? 0, subject: event.subject, now: now, in: db)
      return try EventsStore.delivery(id, in: db)
    }
    self.dispatcher.signal()
    return .with { $0.delivery = delivery ?? .init() }
  }

  public func listWebhookDeliveries(
    request: Nest_Events_V1_ListWebhookDeliveriesRequest, context: ServerContext
  ) async throws -> Nest_Events_V1_ListWebhookDeliveriesResponse {
    let access = try Access.forCall()
    let page = try PageQuery(request.page)
    let result = try await self.store.database.read { db in
      _ = try Self.webhook(request.webhookID, access, in: db)
      return try EventsStore.deliveries(webhookID: request.webhookID, statuses: request.statuses, page: page, in: db)
    }
    return .with {
      $0.deliveries = result.items
      $0.page = .with { $0.nextPageToken = result.nextPageToken }
    }
  }
}

extension Nest_Events_V1_Webhook: AccessControlled {
  public static let resourceName = "webhook"

  public func holds(_ relation: Relation, for caller: Principal) -> Bool {
    switch relation {
    case .owner, .viewer: self.owner?.isCaller(caller) ?? false
    default: false
    }
  }
}
