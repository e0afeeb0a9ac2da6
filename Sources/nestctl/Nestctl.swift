// nestctl: the platform from the command line. Run it locally (`up`), walk the scenarios
// (`demo`), check it (`reconcile`), mint tokens, and call any RPC of any service.
import ArgumentParser
import Foundation
import NestAuth
import NestDomain
import NestProto
import NestServiceKit

@main
struct Nestctl: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "nestctl",
    abstract: "Run, call and check the Nest Distribution platform.",
    discussion: """
      Addresses come from --<service>-address or NEST_<SERVICE>_ADDRESS (default 127.0.0.1:7101-7105),
      the token from --token or NEST_TOKEN. Errors print the status code, the message and each
      field violation, and exit 1 (a refused call) or 64 (a bad argument).
      """,
    subcommands: [
      UpCommand.self, DemoCommand.self, ReconcileCommand.self, BackupCommand.self, RestoreCommand.self,
      TokenCommand.self, HealthCommand.self,
      InstancesCommand.self, EventsCommand.self, WebhooksCommand.self,
      GroupCommand<CatalogGroup>.self,
      GroupCommand<EntitlementGroup>.self, GroupCommand<OrderGroup>.self, GroupCommand<SettlementGroup>.self,
      CallCommand.self,
    ])
}

struct TokenCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "token", abstract: "Bearer tokens.", subcommands: [Issue.self])

  struct Issue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Print a token signed with the platform's secret, e.g. export NEST_TOKEN=$(nestctl token issue ...).")

    @Option(help: "isv, distributor, customer, operator or service.") var role: String
    @Option(help: "The account id (the token's `sub`).") var subject: String
    @Option(help: "Seconds until it expires.") var lifetime: Int = 3600
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
      guard Nest_Common_V1_Role(claim: self.role) != nil else {
        throw ValidationError("--role must be isv, distributor, customer, operator or service, not \"\(self.role)\"")
      }
      guard !self.subject.isEmpty else { throw ValidationError("--subject must not be empty") }
      guard self.lifetime > 0 else { throw ValidationError("--lifetime must be positive") }
    }

    func run() async throws {
      let tokens = try await NestTokens(secret: try self.connection.secret())
      print(
        try await tokens.sign(
          subject: self.subject, role: Nest_Common_V1_Role(claim: self.role)!, lifetime: .seconds(self.lifetime)))
    }
  }
}

/// `nestctl health ADDRESS`: exit 0 when the service answers Health/Check SERVING; for
/// container health checks.
struct HealthCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "health", abstract: "Exit 0 if the service at ADDRESS answers Health/Check SERVING.")

  @Argument(help: "host:port of the service.") var address: String
  @Option(help: "Seconds to keep trying.") var timeout: Int = 2

  func run() async throws {
    let address: ServiceAddress
    do { address = try ServiceAddress(parsing: self.address) } catch { throw ValidationError(error.description) }
    guard await Readiness.waitUntilServing(address, timeout: .seconds(self.timeout)) else {
      print("\(address): not serving")
      throw ExitCode(1)
    }
    print("\(address): SERVING")
  }
}
