// Memory for protobuf-c messages in flight. protobuf-c allocates through a
// `ProtobufCAllocator`; giving it a bump arena makes unpacking one malloc (sized by the
// guard's estimate), turns free into a no-op, and enforces the allocation budget even if
// the estimate were wrong. Encoding builds the C message tree in an arena the same way.
import CProtobufC

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

@usableFromInline
final class Arena {
  private static let alignment = 16
  private static let encodingChunkBytes = 4096

  /// What protobuf-c calls; lives as long as the arena.
  let allocator: UnsafeMutablePointer<ProtobufCAllocator>
  /// Bytes handed out so far, across chunks.
  private(set) var allocated = 0
  private let limit: Int
  private var chunks: [UnsafeMutableRawPointer] = []
  private var cursor: UnsafeMutableRawPointer? = nil
  private var remaining = 0

  /// An arena of `capacity` bytes up front that refuses to hand out more than `limit`.
  init(capacity: Int, limit: Int) {
    self.limit = limit
    self.allocator = .allocate(capacity: 1)
    self.allocator.initialize(
      to: ProtobufCAllocator(
        alloc: { data, size in
          Unmanaged<Arena>.fromOpaque(data!).takeUnretainedValue().allocate(size)
        },
        free: { _, _ in },
        allocator_data: nil
      )
    )
    self.allocator.pointee.allocator_data = Unmanaged.passUnretained(self).toOpaque()
    if capacity > 0 { self.addChunk(capacity) }
  }

  static func forEncoding() -> Arena {
    Arena(capacity: Self.encodingChunkBytes, limit: .max)
  }

  /// Frees every chunk. The arena is not used after this.
  func release() {
    for chunk in self.chunks { free(chunk) }
    self.chunks.removeAll()
    self.allocator.deallocate()
  }

  @usableFromInline
  func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
    let rounded = (max(size, 1) + Self.alignment - 1) & ~(Self.alignment - 1)
    guard self.allocated + rounded <= self.limit else { return nil }
    if rounded > self.remaining {
      self.addChunk(max(rounded, Self.encodingChunkBytes, self.allocated))
    }
    guard let pointer = self.cursor else { return nil }
    self.cursor = pointer + rounded
    self.remaining -= rounded
    self.allocated += rounded
    return pointer
  }

  /// A zeroed protobuf-c message of `descriptor`'s type with its defaults set.
  @usableFromInline
  func newMessage(
    _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>
  ) -> UnsafeMutablePointer<ProtobufCMessage> {
    let memory = self.allocate(descriptor.pointee.sizeof_message)!
    protobuf_c_message_init(descriptor, memory)
    return memory.assumingMemoryBound(to: ProtobufCMessage.self)
  }

  /// Copies bytes into the arena, optionally NUL-terminated for C strings.
  @usableFromInline
  func copy(_ bytes: UnsafeRawBufferPointer, terminate: Bool) -> UnsafeMutableRawPointer {
    let memory = self.allocate(bytes.count + (terminate ? 1 : 0))!
    if let base = bytes.baseAddress, bytes.count > 0 {
      memory.copyMemory(from: base, byteCount: bytes.count)
    }
    if terminate { memory.storeBytes(of: 0, toByteOffset: bytes.count, as: UInt8.self) }
    return memory
  }

  private func addChunk(_ size: Int) {
    let rounded = (size + Self.alignment - 1) & ~(Self.alignment - 1)
    guard let chunk = aligned_alloc(Self.alignment, rounded) else {
      fatalError("out of memory allocating \(rounded) bytes")
    }
    self.chunks.append(chunk)
    self.cursor = chunk
    self.remaining = rounded
  }
}
