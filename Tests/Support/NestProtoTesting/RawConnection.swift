// A raw TCP connection for what a well-behaved client would never send: hostile-input tests
// of the transport and of every service port.
import Foundation
import NestProto

/// A raw TCP socket to the server, for what a well-behaved client would never send.
public final class RawConnection: @unchecked Sendable {
  // @unchecked: a socket; send and receive may run on two threads, as the kernel allows.
  public let handle: FileHandle
  public let socket: Int32

  public init(port: Int) throws {
    let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    self.socket = socket
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let result = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        Foundation.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard result == 0 else { throw POSIXError(.ECONNREFUSED) }
    var timeout = timeval(tv_sec: 20, tv_usec: 0)
    setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    self.handle = FileHandle(fileDescriptor: socket, closeOnDealloc: true)
  }

  public func send(_ bytes: [UInt8]) {
    var offset = 0
    while offset < bytes.count {
      // MSG_NOSIGNAL: a peer that already closed is an error here, not a SIGPIPE.
      let sent = bytes[offset...].withUnsafeBytes {
        Foundation.send(self.socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
      }
      guard sent > 0 else { return }
      offset += sent
    }
  }

  public func send(frame: Nest_Wire_V1_Frame) throws {
    self.send(try frame.lengthPrefixed())
  }

  /// The next frame, or nil when the server closed the connection (or 20 s passed).
  public func receiveFrame() throws -> Nest_Wire_V1_Frame? {
    guard let header = self.receive(4) else { return nil }
    let length = header.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self).bigEndian }
    guard let body = self.receive(Int(length)) else { return nil }
    return try Nest_Wire_V1_Frame(serializedBytes: body)
  }

  private func receive(_ count: Int) -> [UInt8]? {
    var bytes = [UInt8]()
    while bytes.count < count {
      var chunk = [UInt8](repeating: 0, count: count - bytes.count)
      let read = chunk.withUnsafeMutableBytes { recv(self.socket, $0.baseAddress, $0.count, 0) }
      guard read > 0 else { return nil }
      bytes += chunk[..<read]
    }
    return bytes
  }
}

extension RawConnection {
  /// `receiveFrame` on a Dispatch thread: a blocking recv must not hold one of the few
  /// threads of Swift's cooperative pool, which every other test in the process shares.
  public func nextFrame() async throws -> Nest_Wire_V1_Frame? {
    try await offPool { try self.receiveFrame() }
  }

  /// `send` on a Dispatch thread, for the same reason.
  public func write(_ bytes: [UInt8]) async {
    await offPool { self.send(bytes) }
  }

  public func write(frame: Nest_Wire_V1_Frame) async throws {
    await self.write(try frame.lengthPrefixed())
  }
}

/// Runs blocking work on a Dispatch thread and waits for it without blocking the caller's thread.
public func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
  try await withCheckedThrowingContinuation { continuation in
    DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
  }
}

public func offPool<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
  await withCheckedContinuation { continuation in
    DispatchQueue.global().async { continuation.resume(returning: body()) }
  }
}

extension Nest_Wire_V1_Frame {
  /// The frame as it goes on the wire: 4-byte big-endian length, then the body.
  public func lengthPrefixed() throws -> [UInt8] {
    let body = try self.serializedBytes()
    return withUnsafeBytes(of: UInt32(body.count).bigEndian) { Array($0) } + body
  }
}
