/// What a decode of untrusted bytes may cost.
public struct NestDecodingLimits: Hashable, Sendable {
  /// Largest input accepted (RESOURCE_EXHAUSTED above). Default 4 MiB, the frame limit.
  public var maxMessageBytes: Int
  /// Deepest nesting of messages accepted (INVALID_ARGUMENT below). protobuf-c 1.4 recurses
  /// once per level with no limit of its own.
  public var maxDepth: Int
  /// Memory protobuf-c may allocate per input byte (RESOURCE_EXHAUSTED above), with
  /// `minAllocationBytes` as a floor for small inputs and `maxAllocationBytes` as a cap.
  /// Honest messages stay under 10x (packed varints of int64 are the worst case, 8x);
  /// a map of empty entries needs about 40x and is refused.
  public var allocationBytesPerInputByte: Int
  public var minAllocationBytes: Int
  public var maxAllocationBytes: Int

  public init(
    maxMessageBytes: Int = 4 << 20,
    maxDepth: Int = 64,
    allocationBytesPerInputByte: Int = 16,
    minAllocationBytes: Int = 256 << 10,
    maxAllocationBytes: Int = 64 << 20
  ) {
    self.maxMessageBytes = maxMessageBytes
    self.maxDepth = maxDepth
    self.allocationBytesPerInputByte = allocationBytesPerInputByte
    self.minAllocationBytes = minAllocationBytes
    self.maxAllocationBytes = maxAllocationBytes
  }

  public static let `default` = NestDecodingLimits()

  /// The allocation budget for an input of `count` bytes.
  public func allocationBudget(forInputBytes count: Int) -> Int {
    let (scaled, overflow) = count.multipliedReportingOverflow(by: self.allocationBytesPerInputByte)
    return min(self.maxAllocationBytes, max(self.minAllocationBytes, overflow ? .max : scaled))
  }
}
