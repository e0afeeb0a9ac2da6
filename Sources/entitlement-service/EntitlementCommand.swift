// entitlement-service: distribution authorizations, instances, licenses and permission
// requests as their own process. Flags or NEST_* variables (see `entitlement-service
// --help`); stops gracefully on SIGTERM or SIGINT.
import ArgumentParser
import Entitlement
import NestServiceKit

@main
struct EntitlementCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "entitlement-service",
    abstract: "Distribution authorizations, service instances, licenses and resource permissions.")

  @OptionGroup var options: ServiceOptions

  @Option(help: "Fully managed instances get <base>/<instance id> as logon URL (NEST_LOGON_URL_BASE).")
  var logonUrlBase: String?

  @Option(
    help: "How long before a term ends auto-renew places the renewal, in ms (NEST_RENEWAL_LEAD_MS; default 3 days).")
  var renewalLeadMs: String?

  @Option(
    help:
      "How long after a term ends an instance not renewed is released, in ms (NEST_EXPIRY_GRACE_MS; default 7 days).")
  var expiryGraceMs: String?

  @Option(help: "How often terms are looked at, in ms (NEST_TERM_INTERVAL_MS; default 60000).")
  var termIntervalMs: String?

  @Option(
    help:
      "How long before a term or an authorization ends its parties are told, in ms (NEST_EXPIRY_NOTICE_MS; default 30 days)."
  )
  var expiryNoticeMs: String?

  @Option(
    help:
      "deny or allow: fulfilment endpoints on loopback, private and link-local addresses (NEST_FULFILMENT_PRIVATE_ADDRESSES; default deny)."
  )
  var fulfilmentPrivateAddresses: String?

  @Option(
    help: "Timeout of one call to a provider's fulfilment endpoint, in ms (NEST_FULFILMENT_TIMEOUT_MS; default 10000).")
  var fulfilmentTimeoutMs: String?

  @Option(
    help:
      "Wait after a fulfilment call's first failure, in ms; doubled after each (NEST_FULFILMENT_BACKOFF_INITIAL_MS; default 1000)."
  )
  var fulfilmentBackoffInitialMs: String?

  @Option(help: "Longest wait between fulfilment attempts, in ms (NEST_FULFILMENT_BACKOFF_MAX_MS; default 3600000).")
  var fulfilmentBackoffMaxMs: String?

  @Option(
    help:
      "A fulfilment call failing this long has failed (a create: the instance DEPLOY_FAILED), in ms (NEST_FULFILMENT_RETRY_WINDOW_MS; default 86400000)."
  )
  var fulfilmentRetryWindowMs: String?

  @Option(
    help:
      "How often instances are looked at for versions to upgrade to, in ms (NEST_UPGRADE_INTERVAL_MS; default 60000).")
  var upgradeIntervalMs: String?

  @Option(help: "When automatic upgrades run, HH:MM-HH:MM in UTC (NEST_UPGRADE_WINDOW; default 00:00-24:00).")
  var upgradeWindow: String?

  func run() async throws {
    let flags = [
      "logon.url.base": self.logonUrlBase, "renewal.lead.ms": self.renewalLeadMs,
      "expiry.grace.ms": self.expiryGraceMs, "term.interval.ms": self.termIntervalMs,
      "expiry.notice.ms": self.expiryNoticeMs, "fulfilment.private.addresses": self.fulfilmentPrivateAddresses,
      "fulfilment.timeout.ms": self.fulfilmentTimeoutMs,
      "fulfilment.backoff.initial.ms": self.fulfilmentBackoffInitialMs,
      "fulfilment.backoff.max.ms": self.fulfilmentBackoffMaxMs,
      "fulfilment.retry.window.ms": self.fulfilmentRetryWindowMs, "upgrade.interval.ms": self.upgradeIntervalMs,
      "upgrade.window": self.upgradeWindow,
    ].compactMapValues { $0 }
    let configuration = try await ServiceConfiguration.fromCommandLine(
      .entitlement, options: self.options, extraFlags: flags)
    // A bad timing is a start-up error, before anything listens.
    do {
      _ = try await EntitlementService.timing(configuration.settings)
      _ = try await EntitlementService.fulfilmentPolicy(configuration.settings)
      _ = try await EntitlementService.addressGuard(configuration.settings)
      _ = try await EntitlementService.upgradeWindow(configuration.settings)
    } catch {
      throw ValidationError(error.description)
    }
    try await NestService.runExecutable(EntitlementService.definition, configuration: configuration)
  }
}
