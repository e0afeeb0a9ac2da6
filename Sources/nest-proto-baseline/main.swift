// nest-proto-baseline: the breaking-change guard as a command, for scripts and CI.
//   nest-proto-baseline BASELINE.binpb CURRENT.binpb
// Both are `protoc --include_imports --descriptor_set_out` files. Prints each breaking
// change and exits 1 if there is any. scripts/update-proto-baseline makes both files.
import Foundation
import NestProtoCompiler

let arguments = CommandLine.arguments.dropFirst()
guard arguments.count == 2 else {
  FileHandle.standardError.write(Data("usage: nest-proto-baseline BASELINE.binpb CURRENT.binpb\n".utf8))
  exit(2)
}
do {
  let files = try arguments.map { try decodeFileDescriptorSet(Array(Data(contentsOf: URL(fileURLWithPath: $0)))) }
  let changes = breakingChanges(baseline: files[0], current: files[1])
  for change in changes { print(change) }
  if !changes.isEmpty {
    print("\(changes.count) breaking change(s). If deliberate, run scripts/update-proto-baseline.")
    exit(1)
  }
  print("no breaking changes")
} catch {
  FileHandle.standardError.write(Data("\(error)\n".utf8))
  exit(2)
}
