import Foundation
import SigilCore
import SigilTestSupport
import Testing

@Suite("RateLimiter")
struct RateLimiterTests {
    static let start = TestPKI.referenceDate

    func limiter(_ perSecond: Double, burst: Int, maxKeys: Int = 100_000) -> (RateLimiter, ManualClock) {
        let clock = ManualClock(now: Self.start)
        return (
            RateLimiter(limit: RateLimit(perSecond: perSecond, burst: burst), clock: clock, maxKeys: maxKeys), clock
        )
    }

    @Test("a burst is allowed at once, the next request is refused with the wait for one token")
    func burstThenRefusal() {
        let (limiter, _) = limiter(2, burst: 3)
        for _ in 0..<3 { #expect(limiter.take("a") == .allowed) }
        #expect(limiter.take("a") == .limited(retryAfter: .milliseconds(500), audit: true))
    }

    @Test("tokens refill at the configured rate, never beyond the burst")
    func refill() {
        let (limiter, clock) = limiter(2, burst: 3)
        for _ in 0..<3 { _ = limiter.take("a") }
        clock.advance(by: .milliseconds(500))
        #expect(limiter.take("a") == .allowed)
        #expect(limiter.take("a") != .allowed)
        clock.advance(by: .seconds(3600))
        for _ in 0..<3 { #expect(limiter.take("a") == .allowed) }
        #expect(limiter.take("a") != .allowed)
    }

    @Test("keys are independent")
    func keysAreIndependent() {
        let (limiter, _) = limiter(1, burst: 1)
        #expect(limiter.take("10.0.0.1") == .allowed)
        #expect(limiter.take("10.0.0.1") != .allowed)
        #expect(limiter.take("10.0.0.2") == .allowed)
    }

    @Test("only the first refusal of a key in the audit interval asks to be audited")
    func auditOncePerInterval() {
        let (limiter, clock) = limiter(0.001, burst: 1)
        _ = limiter.take("a")
        guard case .limited(_, let first) = limiter.take("a"), case .limited(_, let second) = limiter.take("a") else {
            Issue.record("expected refusals")
            return
        }
        #expect(first && !second)
        clock.advance(by: .seconds(59))
        #expect(limiter.take("a") == .limited(retryAfter: .seconds(941), audit: false))
        clock.advance(by: .seconds(1))
        guard case .limited(_, let afterInterval) = limiter.take("a") else {
            Issue.record("expected a refusal")
            return
        }
        #expect(afterInterval)
    }

    @Test("a limit of 0 per second is off")
    func off() {
        let (limiter, _) = limiter(0, burst: 0)
        for _ in 0..<10_000 { #expect(limiter.take("a") == .allowed) }
        #expect(limiter.trackedKeys == 0)
    }

    @Test("a clock stepping backwards refills nothing and drains nothing")
    func clockStepsBack() {
        let (limiter, clock) = limiter(1, burst: 1)
        #expect(limiter.take("a") == .allowed)
        clock.set(Self.start - .seconds(3600))
        #expect(limiter.take("a") != .allowed)
    }

    @Test("memory stays bounded: idle keys are dropped first, and dropping only forgives")
    func boundedKeys() {
        let (limiter, clock) = limiter(1, burst: 2, maxKeys: 100)
        _ = limiter.take("busy")
        _ = limiter.take("busy")
        for index in 0..<1_000 {
            _ = limiter.take("client-\(index)")
            clock.advance(by: .milliseconds(1))
        }
        #expect(limiter.trackedKeys <= 100)
        // A dropped key starts again with a full bucket: never a refusal it did not earn.
        #expect(limiter.take("client-0") == .allowed)
    }

    @Test(
        "invalid limits are configuration errors",
        arguments: [
            RateLimit(perSecond: -1, burst: 10), RateLimit(perSecond: 5, burst: 0),
            RateLimit(perSecond: .infinity, burst: 1),
        ])
    func invalid(_ limit: RateLimit) {
        #expect(throws: CAError.self) { try limit.validate("--rate-limit-client") }
    }
}
