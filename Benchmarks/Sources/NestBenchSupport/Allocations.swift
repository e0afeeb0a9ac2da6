// Allocation counts for the benchmarks: ordo-one's malloc interposer, linked into the
// benchmark executables (on Linux a linked library that defines malloc and free takes them
// over for the whole process, before libc; no LD_PRELOAD is needed). Counting is on from
// `start()`; a benchmark reads the totals before and after what it measures.
import MallocInterposerSwift

public enum Allocations {
  public struct Count: Sendable {
    /// Calls to malloc, calloc, realloc, posix_memalign and the like.
    public var mallocs: Int
    /// Bytes they asked for.
    public var bytes: Int

    public static func - (after: Count, before: Count) -> Count {
      Count(mallocs: after.mallocs - before.mallocs, bytes: after.bytes - before.bytes)
    }

    /// "N allocs B bytes", as a server prints it for the benchmark that started it.
    public var line: String { "allocations \(self.mallocs) \(self.bytes)" }

    public init(mallocs: Int, bytes: Int) {
      self.mallocs = mallocs
      self.bytes = bytes
    }

    public init?(line: some StringProtocol) {
      let fields = line.split(separator: " ")
      guard fields.count == 3, fields[0] == "allocations", let mallocs = Int(fields[1]), let bytes = Int(fields[2])
      else { return nil }
      self.init(mallocs: mallocs, bytes: bytes)
    }
  }

  /// Counts from now on, in every thread of the process.
  public static func start() {
    MallocInterposerSwift.initialize()
    MallocInterposerSwift.hook()
  }

  /// The process's totals since `start()`.
  public static func now() -> Count {
    let statistics = MallocInterposerSwift.getStatistics()
    return Count(mallocs: statistics.mallocCount, bytes: statistics.mallocBytesCount)
  }

  /// What `body` allocated, per call of it: `(mallocs, bytes)` divided by `calls`.
  public static func perCall(_ calls: Int, _ body: () throws -> Void) rethrows -> (mallocs: Double, bytes: Double) {
    let before = now()
    try body()
    let spent = now() - before
    return (Double(spent.mallocs) / Double(calls), Double(spent.bytes) / Double(calls))
  }
}
