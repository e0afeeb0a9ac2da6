import FuzzSupport
// libFuzzer entry point for the server's frame decoder: arbitrary bytes as they would
// arrive on a connection, split into frames by NestTransport's FrameDecoder. Nothing may
// crash; every decoded frame must re-encode canonically.
import NIOCore
import NestProto
import NestTransport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  var buffer = ByteBuffer(bytes: UnsafeBufferPointer(start: data, count: size))
  // A small limit so that oversized lengths are exercised as often as valid ones.
  while true {
    let frame: Nest_Wire_V1_Frame?
    do {
      frame = try FrameDecoder.next(from: &buffer, maxFrameBytes: 1 << 16)
    } catch {
      return 0  // the connection would be closed with GOAWAY
    }
    guard let frame else { return 0 }  // needs more bytes
    guard let encoded = try? frame.serializedBytes(),
      let again = try? Nest_Wire_V1_Frame(serializedBytes: encoded).serializedBytes(), again == encoded
    else {
      fatalError("a decoded frame does not re-encode canonically")
    }
  }
}

@_cdecl("nest_fuzz_frames_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  runLibFuzzer(argc, argv, { fuzz($0, $1) })
}
