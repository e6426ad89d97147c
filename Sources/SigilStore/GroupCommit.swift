import Foundation
import SigilCore
import Synchronization

/// The one way audit records reach a store, serialised per process: every write that appends records goes
/// through this queue, and observers (the streaming sink) are told of each commit's records when it has
/// committed, in chain order.
///
/// Concurrent appends are batched into shared transactions: while one commit (and its fsync) is in flight, new
/// ones queue up and go together in the next, so durability costs one fsync per batch rather than per request.
/// Writes that change more than the chain (an authority, a revocation) run alone, in queue order.
final class GroupCommit: Sendable {
    /// One unit of batched work: an audit event, with the inventory row of an issuance when there is one.
    struct Item: Sendable {
        let inventory: InventoryRecord?
        let event: AuditEvent
    }

    private enum Unit: Sendable {
        case item(Item, CheckedContinuation<AuditRecord, any Error>)
        /// A write of its own that appends `records`; `finish` resumes its caller.
        case exclusive(@Sendable () async throws -> [AuditRecord], CheckedContinuation<Void, any Error>)
    }

    private let state = Mutex<(waiting: [Unit], draining: Bool)>(([], false))
    private let commit: @Sendable ([Item]) async throws -> [AuditRecord]
    private let maxBatch: Int
    let observers = AuditObservers()

    /// - Parameter commit: writes a batch in one transaction, returning one record per item, in order.
    init(maxBatch: Int = 512, commit: @escaping @Sendable ([Item]) async throws -> [AuditRecord]) {
        self.maxBatch = maxBatch
        self.commit = commit
    }

    /// Commits `item` (with others waiting) and returns its record.
    func submit(_ item: Item) async throws -> AuditRecord {
        try await withCheckedThrowingContinuation { continuation in enqueue(.item(item, continuation)) }
    }

    /// Runs `body`, a write of its own that appends audit records, in queue order, and returns its result.
    func exclusive<T: Sendable>(_ body: @escaping @Sendable () async throws -> (T, [AuditRecord])) async throws -> T {
        let result = Mutex<T?>(nil)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            enqueue(
                .exclusive(
                    {
                        let (value, records) = try await body()
                        result.withLock { $0 = value }
                        return records
                    }, continuation))
        }
        guard let value = result.withLock({ $0 }) else {
            throw StorageError(.unavailable, reason: "a store write returned nothing")
        }
        return value
    }

    private func enqueue(_ unit: Unit) {
        let startDrain = state.withLock { state -> Bool in
            state.waiting.append(unit)
            if state.draining { return false }
            state.draining = true
            return true
        }
        if startDrain { Task { await self.drain() } }
    }

    /// The next units to run: an exclusive write alone, or the batchable items before the next exclusive one.
    private func next() -> [Unit] {
        state.withLock { state in
            guard let first = state.waiting.first else {
                state.draining = false
                return []
            }
            if case .exclusive = first {
                state.waiting.removeFirst()
                return [first]
            }
            let count =
                state.waiting.prefix(maxBatch).firstIndex {
                    if case .exclusive = $0 { true } else { false }
                } ?? min(maxBatch, state.waiting.count)
            let batch = Array(state.waiting.prefix(count))
            state.waiting.removeFirst(count)
            return batch
        }
    }

    private func drain() async {
        while true {
            let units = next()
            guard let first = units.first else { return }
            if case .exclusive(let body, let continuation) = first {
                do {
                    observers.notify(try await body())
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
                continue
            }
            let batch = units.compactMap { unit -> (Item, CheckedContinuation<AuditRecord, any Error>)? in
                if case .item(let item, let continuation) = unit { return (item, continuation) }
                return nil
            }
            do {
                let records = try await commit(batch.map(\.0))
                observers.notify(records)
                for ((_, continuation), record) in zip(batch, records) { continuation.resume(returning: record) }
            } catch let error as StorageError where error.code == .conflict && batch.count > 1 {
                // One bad item (a duplicate serial) must not fail its neighbours: retry the batch one by one.
                for (item, continuation) in batch {
                    do {
                        let records = try await commit([item])
                        observers.notify(records)
                        continuation.resume(returning: records[0])
                    } catch {
                        continuation.resume(throwing: error)
                    }
                }
            } catch {
                // The store is unavailable: everyone waiting fails now, nobody waits for a second attempt.
                for (_, continuation) in batch { continuation.resume(throwing: error) }
            }
        }
    }
}

/// Callbacks told about committed audit records.
final class AuditObservers: Sendable {
    private let list = Mutex<[@Sendable ([AuditRecord]) -> Void]>([])
    func add(_ observer: @escaping @Sendable ([AuditRecord]) -> Void) { list.withLock { $0.append(observer) } }
    func notify(_ records: [AuditRecord]) {
        guard !records.isEmpty else { return }
        for observer in list.withLock({ $0 }) { observer(records) }
    }
}

/// Every store operation runs under one deadline, on both backends: a store that hangs (PostgreSQL down, a
/// disk that stalls, a lock held elsewhere) gives a prompt `unavailable` (and so `audit_unavailable` or
/// unready), never a request that hangs while the driver retries.
enum StoreDeadline {
    static let operation: Duration = .seconds(5)

    /// Returns `body`'s result, or throws `unavailable` once `timeout` passes. A task group would wait for the
    /// body to notice cancellation (postgres-nio's pool may not for a minute, a blocked SQLite call never does),
    /// so the body runs unstructured and is cancelled and abandoned on timeout. The timer is cancelled as soon
    /// as the body answers: thousands of operations a second must not leave thousands of sleeping tasks.
    static func run<T: Sendable>(
        _ what: String, timeout: Duration = operation, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let outcome = DeadlineOutcome<T>()
        return try await withCheckedThrowingContinuation { continuation in
            outcome.install(continuation)
            let work = Task {
                do { outcome.finish(.success(try await body())) } catch { outcome.finish(.failure(error)) }
            }
            outcome.arm(
                Task {
                    do { try await Task.sleep(for: timeout) } catch { return }  // cancelled: the body answered
                    let late = StorageError(.unavailable, reason: "\(what) did not answer within \(timeout)")
                    if outcome.finish(.failure(late)) { work.cancel() }
                })
        }
    }
}

/// The first of a result and a timeout wins; the loser is ignored, and the timer is cancelled.
final class DeadlineOutcome<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var done = false
        var timer: Task<Void, Never>?
    }
    private let state = Mutex(State())

    func install(_ continuation: CheckedContinuation<T, any Error>) {
        state.withLock { $0.continuation = continuation }
    }

    /// Keeps `timer` to cancel when a result arrives, or cancels it now if one already has.
    func arm(_ timer: Task<Void, Never>) {
        let finished = state.withLock { state -> Bool in
            if !state.done { state.timer = timer }
            return state.done
        }
        if finished { timer.cancel() }
    }

    /// Resumes the waiter with `result` if nothing did before; returns whether this call did.
    @discardableResult
    func finish(_ result: Result<T, any Error>) -> Bool {
        let (continuation, timer) = state.withLock {
            state -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?) in
            guard !state.done else { return (nil, nil) }
            state.done = true
            defer { state.timer = nil }
            return (state.continuation, state.timer)
        }
        timer?.cancel()
        continuation?.resume(with: result)
        return continuation != nil
    }
}
