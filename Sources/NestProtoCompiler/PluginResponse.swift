// Encodes protoc's CodeGeneratorResponse with protobuf-c.
import CProtocPlugin

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// The bytes protoc expects on a plugin's stdout: the files, or an error it prints.
public func encodePluginResponse(files: [GeneratedFile], error: String?) -> [UInt8] {
  var response = Google__Protobuf__Compiler__CodeGeneratorResponse()
  google__protobuf__compiler__code_generator_response__init(&response)
  var owned: [UnsafeMutableRawPointer] = []
  defer { owned.forEach { free($0) } }
  func copy(_ string: String) -> UnsafeMutablePointer<CChar> {
    let pointer = strdup(string)!
    owned.append(pointer)
    return pointer
  }

  if let error { response.error = copy(error) }
  let entries = UnsafeMutablePointer<Google__Protobuf__Compiler__CodeGeneratorResponse__File>
    .allocate(capacity: max(files.count, 1))
  let pointers = UnsafeMutablePointer<UnsafeMutablePointer<Google__Protobuf__Compiler__CodeGeneratorResponse__File>?>
    .allocate(capacity: max(files.count, 1))
  defer {
    entries.deallocate()
    pointers.deallocate()
  }
  for (index, file) in files.enumerated() {
    (entries + index).initialize(to: .init())
    google__protobuf__compiler__code_generator_response__file__init(entries + index)
    entries[index].name = copy(file.name)
    entries[index].content = copy(file.content)
    pointers[index] = entries + index
  }
  response.n_file = files.count
  response.file = pointers

  let size = google__protobuf__compiler__code_generator_response__get_packed_size(&response)
  return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
    count = google__protobuf__compiler__code_generator_response__pack(&response, buffer.baseAddress)
  }
}
