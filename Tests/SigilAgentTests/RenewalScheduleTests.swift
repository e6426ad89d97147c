import Foundation
import SigilAgent
import SigilTestSupport
import Testing

@Suite("RenewalSchedule")
struct RenewalScheduleTests {
    let notBefore = Date(timeIntervalSince1970: 1_767_225_600)
    var notAfter: Date { notBefore.addingTimeInterval(3600) }

    @Test("renews at half-life within ±10 % jitter, and the jitter really spreads")
    func halfLifeWithJitter() {
        var random = SeededGenerator(state: 42)
        let schedule = RenewalSchedule()
        let points = (0..<500).map { _ in
            schedule.renewAt(notBefore: notBefore, notAfter: notAfter, using: &random).timeIntervalSince(notBefore)
        }
        #expect(points.allSatisfy { $0 >= 1620 && $0 <= 1980 })  // 1800 s ± 10 %
        #expect((points.max() ?? 0) - (points.min() ?? 0) > 300)
    }

    @Test("without jitter the renewal point is exactly the configured fraction")
    func exactFraction() {
        var random = SeededGenerator(state: 1)
        let schedule = RenewalSchedule(fraction: 0.75, jitter: 0)
        #expect(
            schedule.renewAt(notBefore: notBefore, notAfter: notAfter, using: &random)
                == notBefore.addingTimeInterval(2700))
    }

    @Test("backoff grows exponentially, stays within [½, 1] of each step, and is capped")
    func backoffGrowsAndCaps() {
        var random = SeededGenerator(state: 7)
        let schedule = RenewalSchedule(backoffBase: .seconds(1), backoffCap: .seconds(30))
        for attempt in 0..<10 {
            let step = min(pow(2, Double(attempt)), 30)
            let delay = schedule.backoff(attempt: attempt, now: notBefore, deadline: nil, using: &random).timeInterval
            #expect(delay >= step / 2 - 0.001 && delay <= step + 0.001, "attempt \(attempt): \(delay)")
        }
        #expect(schedule.backoff(attempt: 1000, now: notBefore, deadline: nil, using: &random).timeInterval <= 30)
    }

    @Test("backoff never waits past a quarter of the time left before expiry")
    func backoffRespectsExpiry() {
        var random = SeededGenerator(state: 9)
        let schedule = RenewalSchedule(backoffBase: .seconds(1), backoffCap: .seconds(300))
        let deadline = notBefore.addingTimeInterval(40)
        let delay = schedule.backoff(attempt: 12, now: notBefore, deadline: deadline, using: &random).timeInterval
        #expect(delay <= 10.001)
    }
}
