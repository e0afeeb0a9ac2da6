// libFuzzer entry point: byte 0 picks a message type of proto/ (in name order), the rest
// is decoded as that type through the same guarded path the server uses. Nothing may
// crash; whatever decodes must re-encode canonically: encode(decode(encode(m))) == encode(m).
import FuzzSupport
import NestProto
import NestProtoRuntime

let messageTypes = NestProtoMessages.all.sorted { $0.protoMessageName < $1.protoMessageName }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
  guard size > 0 else { return 0 }
  let type = messageTypes[Int(data[0]) % messageTypes.count]
  check(type, UnsafeRawBufferPointer(start: data + 1, count: size - 1))
  return 0
}

func check<M: NestMessage>(_ type: M.Type, _ bytes: UnsafeRawBufferPointer) {
  guard let message = try? M(unsafeBytes: bytes) else { return }
  guard let encoded = try? message.serializedBytes() else {
    fatalError("\(M.protoMessageName): a decoded message failed to encode")
  }
  guard let again = try? M(serializedBytes: encoded).serializedBytes(), again == encoded else {
    fatalError("\(M.protoMessageName): re-encoding is not canonical")
  }
}

@_cdecl("nest_fuzz_messages_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  runLibFuzzer(argc, argv, { fuzz($0, $1) })
}
