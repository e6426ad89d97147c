import Foundation
import SigilCore
import Synchronization

/// A `WallClock` that moves only when a test moves it.
///
/// A task that calls `sleep(until:)` with a deadline in the future becomes a *sleeper*: it stays suspended
/// until `advance(by:)` or `set(_:)` moves `now` to or past its deadline, or until it is cancelled. A test
/// calls `waitForSleepers(count:)` first, so that it moves time only once the code under test is waiting
/// (STYLE.md, "Time"); no test ever needs `Task.sleep`.
public final class ManualClock: WallClock, Sendable {
    private struct Sleeper {
        let deadline: Date
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct Waiter {
        let count: Int
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: Date
        var sleepers: [UInt64: Sleeper] = [:]
        var waiters: [UInt64: Waiter] = [:]
        var nextID: UInt64 = 0

        mutating func makeID() -> UInt64 {
            nextID += 1
            return nextID
        }

        /// Removes and returns the waiters whose sleeper count has been reached.
        mutating func satisfiedWaiters() -> [Waiter] {
            let ready = waiters.filter { $0.value.count <= sleepers.count }
            for id in ready.keys { waiters[id] = nil }
            return Array(ready.values)
        }

        /// Removes and returns the sleepers whose deadline is at or before `now`.
        mutating func dueSleepers() -> [Sleeper] {
            let due = sleepers.filter { $0.value.deadline <= now }
            for id in due.keys { sleepers[id] = nil }
            return Array(due.values)
        }
    }

    private let state: Mutex<State>

    /// Creates a clock that reads `now` until moved.
    public init(now: Date) {
        state = Mutex(State(now: now))
    }

    public var now: Date { state.withLock { $0.now } }

    /// The number of tasks currently suspended in `sleep(until:)`.
    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    /// The earliest deadline among the current sleepers, if any.
    public var nextDeadline: Date? { state.withLock { $0.sleepers.values.map(\.deadline).min() } }

    /// Suspends until the clock reaches `deadline`; returns at once if it already has.
    /// - Throws: `CancellationError` if the calling task is cancelled while asleep.
    public func sleep(until deadline: Date) async throws {
        let id = state.withLock { $0.makeID() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Outcome {
                    case resume, cancel
                    case sleep([Waiter])
                }
                let outcome = state.withLock { state -> Outcome in
                    // Checked under the lock: the cancellation handler either runs after this and finds the
                    // sleeper, or ran before and the flag is already set.
                    if Task.isCancelled { return .cancel }
                    if deadline <= state.now { return .resume }
                    state.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    return .sleep(state.satisfiedWaiters())
                }
                switch outcome {
                case .resume: continuation.resume()
                case .cancel: continuation.resume(throwing: CancellationError())
                case .sleep(let waiters): waiters.forEach { $0.continuation.resume() }
                }
            }
        } onCancel: {
            let sleeper = state.withLock { $0.sleepers.removeValue(forKey: id) }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves the clock forward by `duration` and wakes every sleeper whose deadline has been reached.
    public func advance(by duration: Duration) {
        precondition(
            duration >= .zero, "ManualClock.advance(by:) takes a non-negative duration; use set(_:) to go back")
        move { $0 + duration }
    }

    /// Sets the clock to `date` (forwards or backwards, like a wall-clock jump) and wakes every sleeper
    /// whose deadline is at or before it.
    public func set(_ date: Date) {
        move { _ in date }
    }

    /// Suspends until at least `count` tasks are asleep on this clock.
    /// - Throws: `CancellationError` if the calling task is cancelled first.
    public func waitForSleepers(count: Int) async throws {
        let id = state.withLock { $0.makeID() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Outcome { case resume, cancel, wait }
                let outcome = state.withLock { state -> Outcome in
                    if Task.isCancelled { return .cancel }
                    if state.sleepers.count >= count { return .resume }
                    state.waiters[id] = Waiter(count: count, continuation: continuation)
                    return .wait
                }
                switch outcome {
                case .resume: continuation.resume()
                case .cancel: continuation.resume(throwing: CancellationError())
                case .wait: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    private func move(_ change: (Date) -> Date) {
        // Resume outside the lock: a resumed task may call back into the clock at once.
        let due = state.withLock { state -> [Sleeper] in
            state.now = change(state.now)
            return state.dueSleepers()
        }
        for sleeper in due { sleeper.continuation.resume() }
    }
}
