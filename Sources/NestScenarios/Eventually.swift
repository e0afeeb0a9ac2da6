// Waiting for what another task or process does: the condition itself is polled, never a
// fixed sleep standing in for it.

/// Polls `condition` every 20 ms until it holds or `timeout` passes; whether it held.
public func eventually(timeout: Duration = .seconds(30), _ condition: () async throws -> Bool) async throws -> Bool {
  let deadline = ContinuousClock.now + timeout
  while ContinuousClock.now < deadline {
    if try await condition() { return true }
    try await Task.sleep(for: .milliseconds(20))
  }
  return try await condition()
}
