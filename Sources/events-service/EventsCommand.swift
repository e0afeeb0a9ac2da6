// events-service: the platform's event feed and webhooks as their own process. Flags or
// NEST_* variables (see `events-service --help`); stops gracefully on SIGTERM or SIGINT.
import ArgumentParser
import Events
import NestServiceKit

@main
struct EventsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "events-service",
    abstract: "The feed of what happened on the platform, and the parties' signed webhooks.")

  @OptionGroup var options: ServiceOptions
  @Option(
    help:
      "deny or allow: webhooks to loopback, private and link-local addresses (NEST_WEBHOOK_PRIVATE_ADDRESSES; default deny)."
  )
  var webhookPrivateAddresses: String?
  @Option(help: "Timeout of one delivery attempt, in milliseconds (NEST_WEBHOOK_TIMEOUT_MS; default 10000).")
  var webhookTimeoutMs: String?
  @Option(
    help:
      "Wait after a delivery's first failure, in milliseconds; doubled after each (NEST_WEBHOOK_BACKOFF_INITIAL_MS; default 1000)."
  )
  var webhookBackoffInitialMs: String?
  @Option(help: "Longest wait between attempts, in milliseconds (NEST_WEBHOOK_BACKOFF_MAX_MS; default 3600000).")
  var webhookBackoffMaxMs: String?
  @Option(
    help: "A webhook failing this long is disabled, in milliseconds (NEST_WEBHOOK_RETRY_WINDOW_MS; default 86400000).")
  var webhookRetryWindowMs: String?
  @Option(help: "How long the feed keeps events, in hours (NEST_EVENT_RETENTION_HOURS; default 720).")
  var eventRetentionHours: String?

  func run() async throws {
    let extra: [(String, String?)] = [
      ("webhook.private.addresses", self.webhookPrivateAddresses), ("webhook.timeout.ms", self.webhookTimeoutMs),
      ("webhook.backoff.initial.ms", self.webhookBackoffInitialMs),
      ("webhook.backoff.max.ms", self.webhookBackoffMaxMs),
      ("webhook.retry.window.ms", self.webhookRetryWindowMs), ("event.retention.hours", self.eventRetentionHours),
    ]
    let configuration = try await ServiceConfiguration.fromCommandLine(
      .events, options: self.options,
      extraFlags: Dictionary(uniqueKeysWithValues: extra.compactMap { key, value in value.map { (key, $0) } }))
    try await NestService.runExecutable(EventsService.definition, configuration: configuration)
  }
}
