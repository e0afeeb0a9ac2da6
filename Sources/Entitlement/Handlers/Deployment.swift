// Deployment of instances behind a small protocol: entitlement records an instance as
// CREATED, and a driver in the service group moves it to DEPLOYING, asks the deployer, and
// records DEPLOYED or DEPLOY_FAILED. A fully managed instance whose provider registered a
// fulfilment endpoint is handed to the provider instead (a `create` call, FulfilmentDriver).
// Work left by a restart is picked up again.
import GRDB
import Logging
import NestDomain
public import NestProto
import NestServiceKit
public import ServiceLifecycle

/// Brings an instance's resources up. Must be safe to call again for the same instance
/// (after a restart mid-deployment).
public protocol InstanceDeployer: Sendable {
  func deploy(_ instance: Nest_Entitlement_V1_ServiceInstance) async throws
}

/// The local platform's deployer: there are no cloud resources to create, so every
/// deployment succeeds at once.
public struct LocalDeployer: InstanceDeployer {
  public init() {}
  public func deploy(_ instance: Nest_Entitlement_V1_ServiceInstance) async throws {}
}

/// Runs deployments in the background: woken by new instances (10 ms after, so that those
/// created together are deployed together), and every second in case.
public final class DeploymentDriver: Service, Sendable {
  let store: EntitlementStore
  let deployer: any InstanceDeployer
  let endpoints: EndpointCache?
  let fulfilment: FulfilmentDriver?
  let logger: Logger
  let clock: NestClock
  private let wakeups = Wakeups()

  /// - `endpoints`, `fulfilment`: where providers' endpoints are found and who calls them
  ///   (nil: every instance is the deployer's).
  public init(
    store: EntitlementStore, deployer: any InstanceDeployer = LocalDeployer(), fulfilment: FulfilmentDriver? = nil,
    logger: Logger, clock: NestClock = .system
  ) {
    self.store = store
    self.deployer = deployer
    self.endpoints = fulfilment?.endpoints
    self.fulfilment = fulfilment
    self.logger = logger
    self.clock = clock
  }

  /// Asks the driver to look for new work now.
  public func signal() { self.wakeups.signal() }

  public func run() async throws {
    // A round costs two commits however many instances it deploys: new instances arriving
    // within a few milliseconds of each other are deployed together.
    await self.wakeups.run(every: .seconds(1), gather: .milliseconds(10)) { await self.deployPending() }
  }

  /// Deploys every instance that is CREATED or DEPLOYING now: one commit marks them all
  /// DEPLOYING, the deployer runs, one commit records how each ended.
  public func deployPending() async {
    do {
      let pending = try await self.store.database.read { try EntitlementStore.undeployedInstances(in: $0) }
      guard !pending.isEmpty else { return }
      try await self.advance(pending.filter { $0.status == .created }.map { ($0.id, .startDeploying, "") })
      var outcomes: [(String, InstanceAction, String)] = []
      var handedOver: [(instanceID: String, serviceID: String)] = []
      for instance in pending {
        if let endpoints = self.endpoints, let provider = FulfilmentRules.provider(of: instance) {
          do {
            if try await endpoints.endpoint(ofService: provider.serviceID) != nil {
              handedOver.append((instance.id, provider.serviceID))
              continue
            }
          } catch {
            // The catalog cannot say: the instance waits (DEPLOYING) for the next round.
            self.logger.warning(
              "cannot read the provider's fulfilment endpoint",
              metadata: ["instance": "\(instance.id)", "error": "\(error)"])
            continue
          }
        }
        do {
          try await self.deployer.deploy(instance)
          outcomes.append((instance.id, .finishDeploying, ""))
        } catch {
          outcomes.append((instance.id, .failDeploying, "\(error)"))
        }
      }
      try await self.advance(outcomes, handedOver: handedOver)
      if !handedOver.isEmpty { self.fulfilment?.signal() }
      if pending.count == 100 { self.signal() }  // a full batch: there may be more
    } catch is CancellationError {
      // Shutting down: the round resumes at the next start.
    } catch {
      self.logger.error("deployment round failed", metadata: ["error": "\(error)"])
    }
  }

  private func advance(
    _ steps: [(id: String, action: InstanceAction, reason: String)],
    handedOver: [(instanceID: String, serviceID: String)] = []
  ) async throws {
    guard !steps.isEmpty || !handedOver.isEmpty else { return }
    let now = self.clock.nowUnixMs()
    try await self.store.database.write { db in
      for call in handedOver {
        try EntitlementStore.queue(
          .create, key: FulfilmentRules.createKey(call.instanceID), instanceID: call.instanceID,
          serviceID: call.serviceID, now: now, in: db)
      }
      for step in steps {
        guard let before = try EntitlementStore.instance(step.id, in: db) else { continue }
        // Released (a refund) while deploying: leave it released.
        guard InstanceRules.allows(before.status, step.action) else { continue }
        var instance = before
        InstanceRules.record(
          &instance, try InstanceRules.transition(from: instance.status, step.action), actor: "entitlement",
          reason: step.reason, now: now)
        try EntitlementStore.update(instance, before: before, in: db)
      }
    }
  }
}
