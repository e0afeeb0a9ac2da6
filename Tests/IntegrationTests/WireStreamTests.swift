// Wire protocol v1 carries streams (MESSAGE and HALF_CLOSE frames): grpc.health.v1's Watch
// and server reflection answer on a service's TCP port as they do on its HTTP/2 port, through
// the generated Swift clients over NestClientTransport, against the real executable.
import Foundation
import GRPCCore
import NIOConcurrencyHelpers
import NestProto
import NestProtoTesting
import NestTestKit
import NestTransport
import Testing

@Suite("Streams over wire protocol v1", .serialized, .timeLimit(.minutes(3)))
struct WireStreamTests {
  @Test("reflection on the TCP port: several questions on one stream, each answered in turn")
  func reflection() async throws {
    let platform = try await NestTestPlatform.start(.processes(), services: [.catalog])
    let address = platform.addresses[.catalog]!
    let answers = try await withGRPCClient(
      transport: NestClientTransport(.init(host: address.host, port: address.port, peerName: "wire-stream-test"))
    ) { client in
      try await Grpc_Reflection_V1_ServerReflection.Client(wrapping: client).serverReflectionInfo(
        requestProducer: { writer in
          try await writer.write(.with { $0.messageRequest = .listServices("") })
          try await writer.write(.with { $0.messageRequest = .fileContainingSymbol("nest.catalog.v1.CatalogService") })
          try await writer.write(.with { $0.messageRequest = .fileContainingSymbol("no.such.Symbol") })
        },
        onResponse: { response in
          var all: [Grpc_Reflection_V1_ServerReflectionResponse] = []
          for try await answer in response.messages { all.append(answer) }
          return all
        })
    }
    #expect(answers.count == 3)
    guard answers.count == 3 else { return }
    guard case .listServicesResponse(let list)? = answers[0].messageResponse else {
      Issue.record("not a service list: \(answers[0])")
      return
    }
    #expect(
      Set(list.service.map(\.name)).isSuperset(of: [
        "nest.catalog.v1.CatalogService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
      ]))
    guard case .fileDescriptorResponse(let files)? = answers[1].messageResponse else {
      Issue.record("no descriptors: \(answers[1])")
      return
    }
    #expect(!files.fileDescriptorProto.isEmpty)
    guard case .errorResponse(let error)? = answers[2].messageResponse else {
      Issue.record("an unknown symbol answered \(answers[2])")
      return
    }
    #expect(error.errorCode == Int32(RPCError.Code.notFound.rawValue))
    await platform.stop()
  }

  @Test(
    "Watch on the TCP port: SERVING at once, NOT_SERVING when the service drains on SIGTERM, then it ends and the service exits"
  )
  func watch() async throws {
    let platform = try await NestTestPlatform.start(.processes(), services: [.catalog])
    let address = platform.addresses[.catalog]!
    let stopping = NIOLockedValueBox<Task<Int32?, Never>?>(nil)
    let statuses = try await withGRPCClient(
      transport: NestClientTransport(.init(host: address.host, port: address.port, peerName: "wire-stream-test"))
    ) { client in
      try await Grpc_Health_V1_Health.Client(wrapping: client).watch(
        .with { $0.service = "nest.catalog.v1.CatalogService" }
      ) { response in
        var seen: [Grpc_Health_V1_HealthCheckResponse.ServingStatus] = []
        for try await answer in response.messages {
          seen.append(answer.status)
          // Only once the first status has arrived: the service is asked to stop.
          if seen.count == 1 {
            stopping.withLockedValue { $0 = Task.detached { platform.processes!.stop(.catalog, grace: .seconds(8)) } }
          }
        }
        return seen
      }
    }
    #expect(statuses == [.serving, .notServing])
    // It drained and exited by itself (0), within the grace period: no Watch held it up.
    #expect(await stopping.withLockedValue({ $0 })?.value == 0)
    await platform.stop()
  }
}
