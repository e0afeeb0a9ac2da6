// Fulfilment through the provider: each queued call (a `FulfilmentAction` on an instance whose
// provider registered an endpoint) POSTed to the provider's endpoint, signed as Standard
// Webhooks says, idempotent on its key (`webhook-id`), one at a time per instance and in order,
// retried with capped exponential backoff. A `create` answered 2xx deploys the instance with
// the provider's logon URL and facts; one that fails for the whole retry window leaves it
// DEPLOY_FAILED with the reason (its parties and the operator get `instance.deploy_failed`; its
// order can be refunded). Attempts run concurrently, each bounded by the timeout; a provider
// that never answers holds only its own calls.
import GRDB
public import Logging
import Metrics
import NIOConcurrencyHelpers
public import NestDomain
import NestProto
import NestServiceKit
public import NestWebhooks
public import ServiceLifecycle

public final class FulfilmentDriver: Service, Sendable {
  public typealias Policy = EndpointRetryPolicy

  let store: EntitlementStore
  let endpoints: EndpointCache
  let policy: Policy
  let logger: Logger
  let clock: NestClock
  let concurrency = 16
  private let poster: SignedPoster
  private let wakeups = Wakeups()
  private let inFlight = NIOLockedValueBox<Set<Int64>>([])

  public init(
    store: EntitlementStore, catalog: any CatalogFacts, addressGuard: AddressGuard, policy: Policy, logger: Logger,
    clock: NestClock
  ) {
    self.store = store
    self.endpoints = EndpointCache(catalog: catalog, clock: clock)
    self.policy = policy
    self.logger = logger
    self.clock = clock
    self.poster = SignedPoster(timeout: policy.timeout, addressGuard: addressGuard, userAgent: "nest-entitlement/0.1")
  }

  /// New calls were queued: look now.
  public func signal() { self.wakeups.signal() }

  public func run() async throws {
    let (due, continuation) = AsyncStream<FulfilmentCall>.makeStream()
    // Graceful shutdown cancels the attempts in flight: they are made again at the next
    // start (the provider recognizes a repeat by webhook-id).
    await cancelWhenGracefulShutdown {
      await withDiscardingTaskGroup { group in
        group.addTask {
          await self.wakeups.run(every: .milliseconds(250)) { await self.findDue(continuation) }
          continuation.finish()
        }
        for await call in due {
          group.addTask { await self.attempt(call) }
        }
      }
    }
    await self.poster.shutdown()
  }

  /// Hands the calls due now to `continuation`, within the concurrency limit.
  func findDue(_ continuation: AsyncStream<FulfilmentCall>.Continuation) async {
    let flying = self.inFlight.withLockedValue { $0 }
    let room = self.concurrency - flying.count
    guard room > 0 else { return }
    let now = self.clock.nowUnixMs()
    do {
      let found = try await self.store.database.read {
        try EntitlementStore.dueFulfilmentCalls(now: now, limit: room, excluding: flying, in: $0)
      }
      for call in found {
        self.inFlight.withLockedValue { _ = $0.insert(call.seq) }
        continuation.yield(call)
      }
    } catch {
      self.logger.error("cannot read the fulfilment calls due", metadata: ["error": "\(error)"])
    }
  }

  /// One attempt at one call, and its outcome recorded.
  func attempt(_ call: FulfilmentCall) async {
    defer {
      self.inFlight.withLockedValue { _ = $0.remove(call.seq) }
      self.wakeups.signal()
    }
    let outcome = await self.make(call)
    guard !Task.isCancelled else { return }
    Counter(
      label: "nest_fulfilment_attempts_total",
      dimensions: [("action", call.action.rawValue), ("outcome", outcome.label)]
    ).increment()
    do {
      try await self.store.database.write { db in try self.record(call, outcome, in: db) }
    } catch {
      // Not recorded: the call is made again (the provider sees the same webhook-id).
      self.logger.error("cannot record a fulfilment call", metadata: ["call": "\(call.key)", "error": "\(error)"])
    }
  }

  enum Outcome {
    /// 2xx; for `create`, what the answer carried.
    case done(logonURL: String?, facts: [String: String])
    /// Not made, and not to be: why.
    case skipped(String)
    /// The instance has no provider endpoint (any more): the platform deploys it.
    case local
    case failed(String)

    var label: String {
      switch self {
      case .done: "done"
      case .skipped: "skipped"
      case .local: "local"
      case .failed: "failed"
      }
    }
  }

  /// Makes the call: the instance as it is now, the endpoint as the catalog has it.
  func make(_ call: FulfilmentCall) async -> Outcome {
    let instance: Nest_Entitlement_V1_ServiceInstance?
    do {
      instance = try await self.store.database.read { try EntitlementStore.instance(call.instanceID, in: $0) }
    } catch {
      return .failed("cannot read the instance: \(error)")
    }
    guard let instance, let provider = FulfilmentRules.provider(of: instance) else {
      return .skipped("the instance is not fully managed")
    }
    if call.action == .create && instance.status != .deploying {
      return .skipped("the instance was \(instance.status) before the provider answered")
    }
    if call.action == .upgrade || call.action == .rollback {
      let id = call.key.split(separator: "/").last.map(String.init) ?? ""
      guard instance.upgrades.contains(where: { $0.id == id && $0.status == .upgrading }) else {
        return .skipped("the upgrade \(id) is no longer in progress")
      }
      guard instance.status != .released else { return .skipped("the instance was released") }
    }
    let endpoint: Nest_Catalog_V1_FulfilmentEndpoint?
    do {
      endpoint = try await self.endpoints.endpoint(ofService: call.serviceID)
    } catch {
      return .failed("cannot read the fulfilment endpoint from the catalog: \(error)")
    }
    guard let endpoint else {
      return call.action == .create ? .local : .skipped("the service has no fulfilment endpoint any more")
    }
    let body: [UInt8]
    do {
      body = try FulfilmentRules.body(call.action, instance: instance, provider: provider.party.role)
    } catch {
      return .failed("cannot encode the instance: \(error)")
    }
    let answer = await self.poster.post(
      url: endpoint.url, id: call.key, secrets: [endpoint.secret], body: body,
      answerLimit: call.action == .create ? FulfilmentRules.answerLimit : 0)
    switch answer {
    case .failure(let failure):
      return .failed(failure.reason)
    case .success(let bytes) where call.action == .create:
      do {
        let parsed = try FulfilmentRules.answer(bytes)
        return .done(logonURL: parsed.logonURL, facts: parsed.facts)
      } catch {
        return .failed(error.message)
      }
    case .success:
      return .done(logonURL: nil, facts: [:])
    }
  }

  /// The outcome in the call (and, for `create`, in the instance).
  func record(_ made: FulfilmentCall, _ outcome: Outcome, in db: Database) throws {
    guard var call = try EntitlementStore.fulfilmentCall(made.seq, in: db), call.status == .pending else { return }
    let now = self.clock.nowUnixMs()
    call.attempts += 1
    if call.firstAttemptAtUnixMs == 0 { call.firstAttemptAtUnixMs = now }
    switch outcome {
    case .done where call.action == .upgrade || call.action == .rollback,
      .local where call.action == .upgrade || call.action == .rollback:
      call.status = .done
      try self.endUpgrade(call, failure: nil, now: now, in: db)
    case .skipped(let why) where call.action == .upgrade || call.action == .rollback:
      call.status = .skipped
      call.lastError = why
      try self.endUpgrade(call, failure: why, now: now, in: db)
    case .done(let logonURL, let facts):
      call.status = .done
      call.lastError = ""
      if call.action == .create {
        try self.finishDeploying(
          call.instanceID, logonURL: logonURL, facts: facts, reason: "fulfilled by the provider", now: now, in: db)
      }
    case .local:
      call.status = .done
      call.lastError = "no fulfilment endpoint when called: deployed by the platform"
      try self.finishDeploying(
        call.instanceID, logonURL: nil, facts: [:], reason: "deployed by the platform", now: now, in: db)
    case .skipped(let why):
      call.status = .skipped
      call.lastError = why
    case .failed(let why):
      call.lastError = why
      call.nextAttemptAtUnixMs = self.policy.nextAttempt(afterFailures: call.attempts, now: now)
      if self.policy.exhausted(failingSince: call.firstAttemptAtUnixMs, now: now) {
        call.status = .failed
        self.logger.warning(
          "a provider's fulfilment endpoint failed for the whole retry window",
          metadata: ["call": "\(call.key)", "error": "\(why)"])
        if call.action == .upgrade || call.action == .rollback {
          try self.endUpgrade(
            call, failure: "the provider's fulfilment endpoint failed for \(self.policy.retryWindow): \(why)", now: now,
            in: db)
        }
        if call.action == .create,
          var instance = try EntitlementStore.instance(call.instanceID, in: db),
          InstanceRules.allows(instance.status, .failDeploying)
        {
          InstanceRules.record(
            &instance, .deployFailed, actor: "entitlement",
            reason: "the provider's fulfilment endpoint failed for \(self.policy.retryWindow): \(why)", now: now)
          try EntitlementStore.update(instance, in: db)
        }
      }
    }
    try EntitlementStore.save(call, in: db)
  }

  /// An upgrade or rollback call ended: the upgrade done, or failed with why (the instance
  /// keeps its version).
  private func endUpgrade(_ call: FulfilmentCall, failure: String?, now: Int64, in db: Database) throws {
    guard var instance = try EntitlementStore.instance(call.instanceID, in: db) else { return }
    let id = call.key.split(separator: "/").last.map(String.init) ?? ""
    let changed =
      if let failure {
        UpgradeRules.fail(&instance, id: id, reason: failure, now: now)
      } else {
        UpgradeRules.finish(&instance, id: id, now: now)
      }
    // (A provider runs fully managed instances only: there is no license to re-issue.)
    guard changed else { return }
    try EntitlementStore.update(instance, in: db)
  }

  private func finishDeploying(
    _ instanceID: String, logonURL: String?, facts: [String: String], reason: String, now: Int64, in db: Database
  ) throws {
    guard var instance = try EntitlementStore.instance(instanceID, in: db),
      InstanceRules.allows(instance.status, .finishDeploying)
    else { return }
    if let logonURL { instance.access = .logonURL(logonURL) }
    instance.providerFacts = facts
    InstanceRules.record(&instance, .deployed, actor: "entitlement", reason: reason, now: now)
    try EntitlementStore.update(instance, in: db)
  }
}
