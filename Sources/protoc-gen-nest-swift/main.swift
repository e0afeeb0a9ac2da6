// protoc-gen-nest-swift: protoc's plugin protocol on stdin/stdout. Usage:
//   protoc --plugin=protoc-gen-nest-swift=PATH --nest-swift_out=DIR \
//     --nest-swift_opt=CModule=CNestProto,Registry=NestProtoMessages FILE.proto...
import NestProtoCompiler

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

var input: [UInt8] = []
var chunk = [UInt8](repeating: 0, count: 1 << 16)
while true {
  let count = read(0, &chunk, chunk.count)
  if count < 0 && errno == EINTR { continue }
  guard count > 0 else { break }
  input.append(contentsOf: chunk[0..<count])
}

let output: [UInt8]
do {
  output = encodePluginResponse(files: try generate(PluginRequest(bytes: input)), error: nil)
} catch {
  output = encodePluginResponse(files: [], error: "\(error)")
}
var written = 0
while written < output.count {
  let count = output[written...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
  if count < 0 && errno == EINTR { continue }
  guard count > 0 else { exit(1) }
  written += count
}
