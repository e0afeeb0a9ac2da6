// Memory for protobuf-c messages in flight. protobuf-c allocates through a
// `ProtobufCAllocator`; giving it a bump arena makes unpacking one malloc (sized by the
// guard's estimate), turns free into a no-op, and enforces the allocation budget even if
// the estimate were wrong. Encoding builds the C message tree in an arena the same way.
// Each thread keeps one released arena, with its first chunk, for the next message: an
// encode or decode then allocates nothing for the arena itself (without it, five mallocs
// each: the arena, its state, its allocator, its chunk list and the chunk).
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
    var limit: Int
    /// The arena itself, for the slow path that adds a chunk.
    var owner: Unmanaged<Arena>?
  }

  /// What protobuf-c calls; lives as long as the arena.
  let allocator: UnsafeMutablePointer<ProtobufCAllocator>
  private let state: UnsafeMutablePointer<State>
  private var chunks: [UnsafeMutableRawPointer] = []
  /// The size of `chunks[0]`, which a spare arena keeps.
  private var firstChunkBytes = 0
  /// The largest first chunk a thread's spare arena keeps; a larger one is freed.
  private static let spareChunkLimit = 64 << 10

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

  /// An arena for one message: this thread's spare one if it has one, else a new one.
  static func make(capacity: Int, limit: Int) -> Arena {
    guard let arena = SpareArena.take() else { return Arena(capacity: capacity, limit: limit) }
    arena.reset(capacity: capacity, limit: limit)
    return arena
  }

  static func forEncoding() -> Arena {
    Self.make(capacity: Self.encodingChunkBytes, limit: .max)
  }

  /// Done with the message: the arena becomes this thread's spare (keeping its first chunk
  /// when that is not large), or is freed when the thread has one. Not used after this.
  func release() {
    for chunk in self.chunks.dropFirst() { free(chunk) }
    if let first = self.chunks.first, self.firstChunkBytes > Self.spareChunkLimit {
      free(first)
      self.chunks.removeAll(keepingCapacity: true)
    } else if self.chunks.count > 1 {
      self.chunks.removeSubrange(1...)
    }
    if !SpareArena.put(self) { self.destroy() }
  }

  /// Frees the arena and what it holds.
  func destroy() {
    for chunk in self.chunks { free(chunk) }
    self.chunks.removeAll()
    self.allocator.deallocate()
    self.state.deallocate()
  }

  /// Empty again, with at least `capacity` bytes at hand and a budget of `limit`.
  private func reset(capacity: Int, limit: Int) {
    if capacity > self.firstChunkBytes, let first = self.chunks.first {
      free(first)
      self.chunks.removeAll(keepingCapacity: true)
    }
    self.state.pointee.allocated = 0
    self.state.pointee.limit = limit
    if let first = self.chunks.first {
      self.state.pointee.cursor = first
      self.state.pointee.remaining = self.firstChunkBytes
    } else {
      self.state.pointee.cursor = nil
      self.state.pointee.remaining = 0
      if capacity > 0 { self.addChunk(capacity) }
    }
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
    if self.chunks.isEmpty { self.firstChunkBytes = rounded }
    self.chunks.append(chunk)
    self.state.pointee.cursor = chunk
    self.state.pointee.remaining = rounded
  }
}

/// Each thread's spare arena, in a pthread key whose destructor frees it when the thread ends.
private enum SpareArena {
  #if canImport(Glibc) || canImport(Musl)
    static let key: pthread_key_t = {
      var key = pthread_key_t()
      let created = pthread_key_create(&key) { pointer in
        guard let pointer else { return }
        Unmanaged<Arena>.fromOpaque(pointer).takeRetainedValue().destroy()
      }
      precondition(created == 0, "pthread_key_create failed: \(created)")
      return key
    }()

    static func take() -> Arena? {
      guard let pointer = pthread_getspecific(Self.key) else { return nil }
      pthread_setspecific(Self.key, nil)
      return Unmanaged<Arena>.fromOpaque(pointer).takeRetainedValue()
    }

    /// False when the thread already has one.
    static func put(_ arena: Arena) -> Bool {
      guard pthread_getspecific(Self.key) == nil else { return false }
      pthread_setspecific(Self.key, Unmanaged.passRetained(arena).toOpaque())
      return true
    }
  #else
    static func take() -> Arena? { nil }
    static func put(_ arena: Arena) -> Bool { false }
  #endif
}
