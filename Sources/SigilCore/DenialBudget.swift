import Foundation
import Synchronization

/// How many unauthenticated denials per second are audited one by one; the rest are counted and summarised.
///
/// Every refusal of an authenticated caller is audited (each caller is bounded by its identity's rate limit).
/// Refusals before authentication succeeds cost an attacker nothing to cause, so each durable record must be
/// bounded too: up to `perSecond` a second (with a burst of as many) are recorded individually; beyond that
/// they are counted by code, and `takeSummary` hands the counts to one `deny_summary` record per interval.
public final class DenialBudget: Sendable {
    /// Individual records per second; 0 audits every denial (no budget). Default 100.
    public let perSecond: Int
    private let clock: any WallClock
    private let state: Mutex<State>

    struct State {
        var tokens: Double
        var updated: Date
        var suppressed: [String: Int] = [:]
        var since: Date?
    }

    /// The denials counted instead of recorded since `since`.
    public struct Summary: Sendable, Equatable {
        public let since: Date
        public let counts: [String: Int]
        public var total: Int { counts.values.reduce(0, +) }

        /// The summary record's reason: fixed text and the counts by code.
        public var reason: String {
            "\(total) unauthenticated denial(s) over the audit budget since \(Timestamp.seconds(since)), not recorded one by one: "
                + counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
    }

    public init(perSecond: Int, clock: any WallClock) {
        self.perSecond = max(0, perSecond)
        self.clock = clock
        state = Mutex(State(tokens: Double(max(0, perSecond)), updated: clock.now))
    }

    /// Whether a denial with `code` is recorded on its own (true) or only counted (false).
    public func admit(_ code: String) -> Bool {
        guard perSecond > 0 else { return true }
        let now = clock.now
        return state.withLock { state in
            let elapsed = max(0, now.timeIntervalSince(state.updated))
            state.tokens = min(Double(perSecond), state.tokens + elapsed * Double(perSecond))
            state.updated = now
            if state.tokens >= 1 {
                state.tokens -= 1
                return true
            }
            state.suppressed[code, default: 0] += 1
            if state.since == nil { state.since = now }
            return false
        }
    }

    /// The counts since the last summary (nil when nothing was suppressed), and starts counting afresh.
    public func takeSummary() -> Summary? {
        state.withLock { state in
            guard let since = state.since, !state.suppressed.isEmpty else { return nil }
            defer {
                state.suppressed = [:]
                state.since = nil
            }
            return Summary(since: since, counts: state.suppressed)
        }
    }

    /// Denials counted and not yet summarised (for tests and metrics).
    public var pending: Int { state.withLock { $0.suppressed.values.reduce(0, +) } }
}
