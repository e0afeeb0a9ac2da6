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

  /// The bump pointer, kept where protobuf-c's allocation callback can reach it without
  /// touching the class (no retain or release per allocation).
  struct State {
    var cursor: UnsafeMutableRawPointer?
    var remaining: Int
    var allocated: Int
    let limit: Int
    /// The arena itself, for the slow path that adds a chunk.
    var owner: Unmanaged<Arena>?
  }

  /// What protobuf-c calls; lives as long as the arena.
  let allocator: UnsafeMutablePointer<ProtobufCAllocator>
  private let state: UnsafeMutablePointer<State>
  private var chunks: [UnsafeMutableRawPointer] = []

  /// Bytes handed out so far, across chunks.
  var allocated: Int { self.state.pointee.allocated }

  /// An arena of `capacity` bytes up front that refuses to hand out more than `limit`.
  init(capacity: Int, limit: Int) {
    self.state = .allocate(capacity: 1)
    self.state.initialize(to: State(cursor: nil, remaining: 0, allocated: 0, limit: limit, owner: nil))
    self.allocator = .allocate(capacity: 1)
    self.allocator.initialize(
      to: ProtobufCAllocator(
        alloc: { data, size in
          Arena.allocate(size, in: data!.assumingMemoryBound(to: State.self))
        },
        free: { _, _ in },
        allocator_data: UnsafeMutableRawPointer(self.state)
      )
    )
    self.state.pointee.owner = Unmanaged.passUnretained(self)
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
    self.state.deallocate()
  }

  @usableFromInline
  func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
    Self.allocate(size, in: self.state)
  }

  @inline(__always)
  static func allocate(_ size: Int, in state: UnsafeMutablePointer<State>) -> UnsafeMutableRawPointer? {
    let rounded = (max(size, 1) &+ Self.alignment &- 1) & ~(Self.alignment &- 1)
    guard state.pointee.allocated &+ rounded <= state.pointee.limit else { return nil }
    if rounded > state.pointee.remaining {
      let arena = state.pointee.owner!.takeUnretainedValue()
      arena.addChunk(max(rounded, Self.encodingChunkBytes, state.pointee.allocated))
    }
    guard let pointer = state.pointee.cursor else { return nil }
    state.pointee.cursor = pointer + rounded
    state.pointee.remaining &-= rounded
    state.pointee.allocated &+= rounded
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
    self.state.pointee.cursor = chunk
    self.state.pointee.remaining = rounded
  }
}
