// How an executable's log lines are written: text for people (swift-log's stream handler),
// or one JSON object per line for log shippers. Either carries the trace and span ids of
// the call a line belongs to when tracing is on.
import Foundation
public import Logging

public enum LogFormat: String, CaseIterable, Sendable {
  case text, json

  /// Makes every logger of the process write to standard error in this format.
  public func bootstrap(metadataProvider: Logger.MetadataProvider?) {
    switch self {
    case .text:
      LoggingSystem.bootstrap(
        { label, provider in StreamLogHandler.standardError(label: label, metadataProvider: provider) },
        metadataProvider: metadataProvider)
    case .json:
      LoggingSystem.bootstrap(
        { label, provider in JSONLogHandler(label: label, metadataProvider: provider) },
        metadataProvider: metadataProvider)
    }
  }
}

/// One line per entry: `{"time":…,"level":…,"logger":…,"message":…,…metadata}` with the
/// metadata's values as strings (nested lists and dictionaries as JSON).
public struct JSONLogHandler: LogHandler {
  public var logLevel: Logger.Level = .info
  public var metadata: Logger.Metadata = [:]
  public var metadataProvider: Logger.MetadataProvider?
  let label: String

  public init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
    self.label = label
    self.metadataProvider = metadataProvider
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { self.metadata[key] }
    set { self.metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    var fields = self.metadata
    if let provided = self.metadataProvider?.get() { fields.merge(provided) { $1 } }
    if let metadata = event.metadata { fields.merge(metadata) { $1 } }
    var object: [String: Any] = fields.mapValues(Self.json)
    object["time"] = Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true))
    object["level"] = event.level.rawValue
    object["logger"] = self.label
    object["message"] = "\(event.message)"
    object["source"] = event.source
    guard var line = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return }
    line.append(UInt8(ascii: "\n"))
    FileHandle.standardError.write(line)
  }

  static func json(_ value: Logger.Metadata.Value) -> Any {
    switch value {
    case .string(let text): text
    case .stringConvertible(let value): "\(value)"
    case .array(let values): values.map(Self.json)
    case .dictionary(let values): values.mapValues(Self.json)
    }
  }
}
