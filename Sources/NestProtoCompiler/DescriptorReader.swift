// Lifts descriptor.proto messages, unpacked by protobuf-c (CProtocPlugin), into the Swift
// model. The only file of the compiler that reads C structs.
import CProtocPlugin

public struct DescriptorDecodingError: Error, CustomStringConvertible {
  public var description: String
}

/// protoc's request to a plugin.
public struct PluginRequest: Sendable {
  public var filesToGenerate: [String]
  public var parameter: String
  /// Every file of the request, dependencies first.
  public var files: [ProtoFile]

  public init(bytes: [UInt8]) throws {
    let request = bytes.withUnsafeBufferPointer {
      google__protobuf__compiler__code_generator_request__unpack(nil, $0.count, $0.baseAddress)
    }
    guard let request else {
      throw DescriptorDecodingError(description: "stdin is not a CodeGeneratorRequest")
    }
    defer { google__protobuf__compiler__code_generator_request__free_unpacked(request, nil) }
    let r = request.pointee
    self.filesToGenerate = strings(r.file_to_generate, r.n_file_to_generate)
    self.parameter = string(r.parameter)
    self.files = list(r.proto_file, r.n_proto_file).map { ProtoFile($0.pointee) }
  }
}

/// Reads a `FileDescriptorSet` as `protoc --descriptor_set_out` writes it.
public func decodeFileDescriptorSet(_ bytes: [UInt8]) throws -> [ProtoFile] {
  let set = bytes.withUnsafeBufferPointer {
    google__protobuf__file_descriptor_set__unpack(nil, $0.count, $0.baseAddress)
  }
  guard let set else {
    throw DescriptorDecodingError(description: "not a FileDescriptorSet")
  }
  defer { google__protobuf__file_descriptor_set__free_unpacked(set, nil) }
  return list(set.pointee.file, set.pointee.n_file).map { ProtoFile($0.pointee) }
}

private func string(_ chars: UnsafeMutablePointer<CChar>?) -> String {
  chars.map { String(cString: $0) } ?? ""
}

private func strings(_ array: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ count: Int)
  -> [String]
{
  (0..<count).map { string(array?[$0]) }
}

private func list<T>(_ array: UnsafeMutablePointer<UnsafeMutablePointer<T>?>?, _ count: Int)
  -> [UnsafeMutablePointer<T>]
{
  (0..<count).compactMap { array?[$0] }
}

/// Leading (and trailing) comments by source path, e.g. [4, 0, 2, 1] = message 0, field 1.
private struct Comments {
  var byPath: [[Int32]: String] = [:]

  init(_ info: UnsafeMutablePointer<Google__Protobuf__SourceCodeInfo>?) {
    guard let info else { return }
    for location in list(info.pointee.location, info.pointee.n_location) {
      let l = location.pointee
      let path = Array(UnsafeBufferPointer(start: l.path, count: l.n_path))
      let text = [string(l.leading_comments), string(l.trailing_comments)]
        .filter { !$0.isEmpty }.joined(separator: "\n")
      if !text.isEmpty { self.byPath[path] = text }
    }
  }

  subscript(_ path: [Int32]) -> String { self.byPath[path] ?? "" }
}

/// The bytes of the access extension among an options message's unknown fields, if set.
private func extensionBytes(_ options: ProtobufCMessage?) -> [UInt8]? {
  guard let options, let fields = options.unknown_fields else { return nil }
  var bytes: [UInt8]? = nil
  for index in 0..<Int(options.n_unknown_fields) where fields[index].tag == AccessOptions.extensionNumber {
    // protobuf-c keeps a length-delimited field's bytes with their length prefix.
    var field = WireReader(Array(UnsafeBufferPointer(start: fields[index].data, count: fields[index].len)))
    guard let length = try? field.varint() else { continue }
    // A repeated occurrence of a message option merges: its bytes concatenate.
    bytes = (bytes ?? []) + field.bytes[field.offset..<min(field.bytes.count, field.offset + Int(length))]
  }
  return bytes
}

private func reserved<R>(
  _ ranges: UnsafeMutablePointer<UnsafeMutablePointer<R>?>?, _ count: Int, _ bounds: (R) -> (Int32, Int32)
)
  -> [ClosedRange<Int32>]
{
  list(ranges, count).map { range in
    let (start, end) = bounds(range.pointee)
    return start...max(start, end)
  }
}

extension ProtoFile {
  init(_ file: Google__Protobuf__FileDescriptorProto) {
    let comments = Comments(file.source_code_info)
    let package = string(file.package)
    self.name = string(file.name)
    self.package = package
    self.dependencies = strings(file.dependency, file.n_dependency)
    self.messages = list(file.message_type, file.n_message_type).enumerated().map {
      ProtoMessage($1.pointee, scope: package, path: [4, Int32($0)], comments: comments)
    }
    self.enums = list(file.enum_type, file.n_enum_type).enumerated().map {
      ProtoEnum($1.pointee, scope: package, path: [5, Int32($0)], comments: comments)
    }
    self.services = list(file.service, file.n_service).enumerated().map { index, service in
      let s = service.pointee
      let name = string(s.name)
      return ProtoService(
        name: name,
        fullName: package.isEmpty ? name : "\(package).\(name)",
        methods: list(s.method, s.n_method).enumerated().map { methodIndex, method in
          let m = method.pointee
          return ProtoService.Method(
            name: string(m.name),
            inputType: String(string(m.input_type).drop { $0 == "." }),
            outputType: String(string(m.output_type).drop { $0 == "." }),
            clientStreaming: m.has_client_streaming != 0 && m.client_streaming != 0,
            serverStreaming: m.has_server_streaming != 0 && m.server_streaming != 0,
            comments: comments[[6, Int32(index), 2, Int32(methodIndex)]],
            accessOption: extensionBytes(m.options?.pointee.base)
          )
        },
        comments: comments[[6, Int32(index)]]
      )
    }
  }
}

extension ProtoMessage {
  fileprivate init(
    _ message: Google__Protobuf__DescriptorProto, scope: String, path: [Int32], comments: Comments
  ) {
    let name = string(message.name)
    let fullName = scope.isEmpty ? name : "\(scope).\(name)"
    self.name = name
    self.fullName = fullName
    self.fields = list(message.field, message.n_field).enumerated().map { index, field in
      let f = field.pointee
      return ProtoField(
        name: string(f.name),
        number: f.number,
        label: ProtoField.Label(rawValue: Int(f.label.rawValue)) ?? .optional,
        kind: ProtoField.Kind(rawValue: Int(f.type.rawValue)) ?? .group,
        typeName: String(string(f.type_name).drop { $0 == "." }),
        oneofIndex: f.has_oneof_index != 0 ? Int(f.oneof_index) : nil,
        isProto3Optional: f.has_proto3_optional != 0 && f.proto3_optional != 0,
        comments: comments[path + [2, Int32(index)]],
        accessOption: extensionBytes(f.options?.pointee.base)
      )
    }
    self.oneofs = list(message.oneof_decl, message.n_oneof_decl).map { string($0.pointee.name) }
    self.messages = list(message.nested_type, message.n_nested_type).enumerated().map {
      ProtoMessage($1.pointee, scope: fullName, path: path + [3, Int32($0)], comments: comments)
    }
    self.enums = list(message.enum_type, message.n_enum_type).enumerated().map {
      ProtoEnum($1.pointee, scope: fullName, path: path + [4, Int32($0)], comments: comments)
    }
    let options = message.options?.pointee
    self.isMapEntry = options.map { $0.has_map_entry != 0 && $0.map_entry != 0 } ?? false
    // DescriptorProto.ReservedRange's end is exclusive.
    self.reservedNumbers = reserved(message.reserved_range, message.n_reserved_range) {
      ($0.start, $0.end - 1)
    }
    self.reservedNames = strings(message.reserved_name, message.n_reserved_name)
    self.comments = comments[path]
  }
}

extension ProtoEnum {
  fileprivate init(
    _ enumeration: Google__Protobuf__EnumDescriptorProto, scope: String, path: [Int32],
    comments: Comments
  ) {
    let name = string(enumeration.name)
    self.name = name
    self.fullName = scope.isEmpty ? name : "\(scope).\(name)"
    self.values = list(enumeration.value, enumeration.n_value).enumerated().map { index, value in
      Value(
        name: string(value.pointee.name),
        number: value.pointee.number,
        comments: comments[path + [2, Int32(index)]]
      )
    }
    // EnumReservedRange's end is inclusive.
    self.reservedNumbers = reserved(enumeration.reserved_range, enumeration.n_reserved_range) {
      ($0.start, $0.end)
    }
    self.reservedNames = strings(enumeration.reserved_name, enumeration.n_reserved_name)
    self.comments = comments[path]
  }
}
