// Background work that runs when asked (a handler committed something to do) and on a
// timer (work left by a restart, retries that came due), until graceful shutdown.
import ServiceLifecycle

public struct Wakeups: Sendable {
  private let stream: AsyncStream<Void>
  private let continuation: AsyncStream<Void>.Continuation

  public init() {
    (self.stream, self.continuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
  }

  /// Asks for a round of work now; several requests before it starts make one round.
  public func signal() { self.continuation.yield() }

  /// Runs `work` once per signal and at least every `interval`, until the task is cancelled
  /// or the service group shuts down gracefully. With `gather`, a round starts that long
  /// after the signal that woke it, so that the work of signals close together is done in
  /// one round (worth it where a round has a fixed cost, a call or a commit, and nobody
  /// waits on it).
  public func run(
    every interval: Duration, gather: Duration = .zero, _ work: @escaping @Sendable () async -> Void
  ) async {
    let continuation = self.continuation
    let stream = self.stream
    await cancelWhenGracefulShutdown {
      await withTaskGroup(of: Void.self) { group in
        group.addTask {
          // Until the task is cancelled (sleep throws then).
          while true {
            do { try await Task.sleep(for: interval) } catch { return }
            continuation.yield()
          }
        }
        group.addTask {
          for await _ in stream {
            if gather > .zero { try? await Task.sleep(for: gather) }
            if Task.isCancelled { break }
            await work()
          }
        }
        await group.next()
        group.cancelAll()
      }
    }
  }
}
