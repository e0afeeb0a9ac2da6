// What every transport serves: Echo answers with a response the size of the request.
import GRPCCore
import NestProto
import NestProtoTesting

struct BenchEcho: Nest_Testing_V1_Echo.SimpleServiceProtocol {
  func echo(request: Nest_Testing_V1_EchoRequest, context: ServerContext) async throws
    -> Nest_Testing_V1_EchoResponse
  {
    .with {
      $0.text = request.text
      $0.padding = request.padding
    }
  }
}

/// A request of about `bytes` bytes on the wire.
func benchRequest(bytes: Int) -> Nest_Testing_V1_EchoRequest {
  .with {
    $0.text = "bench"
    $0.padding = [UInt8](repeating: 0x5a, count: max(0, bytes - 10))
  }
}
