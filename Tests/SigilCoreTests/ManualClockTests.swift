import Foundation
import SigilCore
import SigilTestSupport
import Testing

@Suite("ManualClock")
struct ManualClockTests {
    static let start = TestPKI.referenceDate
    let clock = ManualClock(now: start)

    @Test("now moves only when advanced or set")
    func nowMovesOnlyByHand() {
        #expect(clock.now == Self.start)
        clock.advance(by: .seconds(90))
        #expect(clock.now == Self.start + .seconds(90))
        clock.set(Self.start - .seconds(3600))
        #expect(clock.now == Self.start - .seconds(3600))
    }

    @Test("sleeping until a past or present deadline returns at once")
    func pastDeadline() async throws {
        try await clock.sleep(until: Self.start)
        try await clock.sleep(until: Self.start - .seconds(1))
        #expect(clock.sleeperCount == 0)
    }

    @Test("advancing wakes exactly the sleepers whose deadline has passed")
    func advanceWakesDueSleepers() async throws {
        let woke = WakeLog()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for seconds in [10, 20, 30] {
                group.addTask {
                    try await clock.sleep(until: Self.start + .seconds(seconds))
                    await woke.record(seconds)
                }
            }
            try await clock.waitForSleepers(count: 3)
            #expect(clock.nextDeadline == Self.start + .seconds(10))

            clock.advance(by: .seconds(20))
            try await group.next()
            try await group.next()
            #expect(await woke.values.sorted() == [10, 20])
            #expect(clock.sleeperCount == 1)
            #expect(clock.nextDeadline == Self.start + .seconds(30))

            clock.set(Self.start + .seconds(30))
            try await group.next()
            #expect(await woke.values.sorted() == [10, 20, 30])
        }
        #expect(clock.sleeperCount == 0)
    }

    @Test("setting the clock backwards wakes no one")
    func backwardsWakesNoOne() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await clock.sleep(until: Self.start + .seconds(10)) }
            try await clock.waitForSleepers(count: 1)
            clock.set(Self.start - .seconds(100))
            #expect(clock.sleeperCount == 1)
            clock.advance(by: .seconds(110))
            try await group.next()
        }
    }

    @Test("cancelling a sleeper throws CancellationError and removes it")
    func cancellation() async throws {
        let task = Task { try await clock.sleep(until: Self.start + .seconds(60)) }
        try await clock.waitForSleepers(count: 1)
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(clock.sleeperCount == 0)
    }

    @Test("a task cancelled before it sleeps throws at once")
    func cancelledBeforeSleeping() async {
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await clock.sleep(until: Self.start + .seconds(60))
        }
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(clock.sleeperCount == 0)
    }

    @Test("waitForSleepers returns at once when enough tasks already sleep, and can be cancelled")
    func waitForSleepers() async throws {
        try await clock.waitForSleepers(count: 0)
        let waiter = Task { try await clock.waitForSleepers(count: 1) }
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
    }
}

/// Collects which sleepers woke, across tasks.
private actor WakeLog {
    private(set) var values: [Int] = []
    func record(_ value: Int) { values.append(value) }
}
