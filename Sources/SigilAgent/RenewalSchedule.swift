import Foundation
import SigilCore

/// When the agent renews and how it backs off: pure functions of the certificate's validity, the attempt
/// number and an injected random source, so they are tested without clocks or sleeps.
public struct RenewalSchedule: Sendable, Equatable {
    /// Fraction of the lifetime after which to renew. Default 0.5 (half-life).
    public var fraction: Double
    /// Relative jitter around that point, ±. Default 0.1 (±10 %), so a fleet issued together does not renew together.
    public var jitter: Double
    /// First retry delay after a failure. Default 1 s.
    public var backoffBase: Duration
    /// Longest retry delay. Default 30 s.
    public var backoffCap: Duration

    public init(
        fraction: Double = 0.5, jitter: Double = 0.1, backoffBase: Duration = .seconds(1),
        backoffCap: Duration = .seconds(30)
    ) {
        self.fraction = min(max(fraction, 0.05), 0.95)
        self.jitter = min(max(jitter, 0), 0.5)
        self.backoffBase = backoffBase
        self.backoffCap = backoffCap
    }

    /// The renewal time of a certificate valid from `notBefore` to `notAfter`.
    public func renewAt(notBefore: Date, notAfter: Date, using random: inout some RandomNumberGenerator) -> Date {
        let lifetime = notAfter.timeIntervalSince(notBefore)
        let spread = jitter == 0 ? 0 : Double.random(in: -jitter...jitter, using: &random)
        let point = min(max(fraction * (1 + spread), 0.01), 0.99)
        return notBefore.addingTimeInterval(lifetime * point)
    }

    /// Delay before retry number `attempt` (0-based): exponential, capped, with jitter in [½, 1] of the step; never
    /// so long that the retry would land after `deadline` (the certificate's expiry) if that can be avoided.
    public func backoff(
        attempt: Int, now: Date, deadline: Date?, using random: inout some RandomNumberGenerator
    ) -> Duration {
        let exponent = min(attempt, 20)
        let step = min(backoffBase.timeInterval * pow(2, Double(exponent)), backoffCap.timeInterval)
        var delay = step * Double.random(in: 0.5...1.0, using: &random)
        if let deadline {
            // Keep at least a few tries before expiry: never wait more than a quarter of what is left.
            let left = deadline.timeIntervalSince(now)
            if left > 0 { delay = min(delay, max(left / 4, backoffBase.timeInterval / 2)) }
        }
        return .milliseconds(Int64(delay * 1000))
    }
}
