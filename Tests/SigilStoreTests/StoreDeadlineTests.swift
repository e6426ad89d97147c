import Foundation
import SigilCore
import Testing

@testable import SigilStore

@Suite("StoreDeadline")
struct StoreDeadlineTests {
    @Test("an answer inside the deadline is returned, and a thrown error passes through unchanged")
    func answersPassThrough() async throws {
        #expect(try await StoreDeadline.run("test", timeout: .seconds(3600)) { 42 } == 42)
        await #expect(throws: StorageError(.conflict, reason: "")) {
            try await StoreDeadline.run("test", timeout: .seconds(3600)) { () async throws -> Int in
                throw StorageError(.conflict, reason: "duplicate serial")
            }
        }
    }

    @Test("a body that never answers gives unavailable at the deadline and is cancelled", .timeLimit(.minutes(1)))
    func hungBodyIsAbandoned() async throws {
        let (cancelled, signal) = AsyncStream.makeStream(of: Void.self)
        await #expect(throws: StorageError(.unavailable, reason: "")) {
            try await StoreDeadline.run("hung store", timeout: .milliseconds(20)) { () async throws -> Int in
                // Stands for a driver call that hangs: it only ends when cancelled.
                do { try await Task.sleep(for: .seconds(3600)) } catch { signal.finish() }
                return 0
            }
        }
        for await _ in cancelled {}  // ends when the body, cancelled, finishes the stream
        #expect(!Task.isCancelled, "the time limit ended the wait: the abandoned body was never cancelled")
    }

    @Test("the timer is cancelled as soon as the body answers, so no sleeping task outlives the operation")
    func timerEndsWithTheAnswer() async throws {
        let outcome = DeadlineOutcome<Int>()
        let timer = Task { _ = try? await Task.sleep(for: .seconds(3600)) }
        defer { timer.cancel() }
        outcome.arm(timer)
        let value = try await withCheckedThrowingContinuation { continuation in
            outcome.install(continuation)
            outcome.finish(.success(7))
        }
        #expect(value == 7)
        #expect(timer.isCancelled, "the timer still sleeps after the answer")

        // A timer armed after the answer (the body can be that fast) is cancelled at once.
        let late = Task { _ = try? await Task.sleep(for: .seconds(3600)) }
        defer { late.cancel() }
        outcome.arm(late)
        #expect(late.isCancelled, "a timer armed after the answer still sleeps")
    }
}
