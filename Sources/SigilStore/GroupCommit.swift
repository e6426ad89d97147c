import SigilCore
import Synchronization

/// Batches concurrent audit appends into shared transactions: while one commit (and its fsync) is in
/// flight, new requests queue up and go together in the next one, so durability costs one fsync per batch
/// rather than per request.
final class GroupCommit: Sendable {
    /// One unit of work: an audit event, with the inventory row of an issuance when there is one.
    struct Item: Sendable {
        let inventory: InventoryRecord?
        let event: AuditEvent

        /// Audit events with no inventory row (authority changes).
        static func events(_ events: [AuditEvent]) -> [Item] { events.map { Item(inventory: nil, event: $0) } }
    }

    private struct Waiting {
        let item: Item
        let continuation: CheckedContinuation<AuditRecord, any Error>
    }

    private let state = Mutex<(waiting: [Waiting], draining: Bool)>(([], false))
    private let commit: @Sendable ([Item]) async throws -> [AuditRecord]
    private let maxBatch: Int

    /// - Parameter commit: writes a batch in one transaction, returning one record per item, in order.
    init(maxBatch: Int = 512, commit: @escaping @Sendable ([Item]) async throws -> [AuditRecord]) {
        self.maxBatch = maxBatch
        self.commit = commit
    }

    func submit(_ item: Item) async throws -> AuditRecord {
        try await withCheckedThrowingContinuation { continuation in
            let startDrain = state.withLock { state -> Bool in
                state.waiting.append(Waiting(item: item, continuation: continuation))
                if state.draining { return false }
                state.draining = true
                return true
            }
            if startDrain { Task { await self.drain() } }
        }
    }

    private func drain() async {
        while true {
            let batch = state.withLock { state -> [Waiting] in
                let batch = Array(state.waiting.prefix(maxBatch))
                state.waiting.removeFirst(batch.count)
                if batch.isEmpty { state.draining = false }
                return batch
            }
            if batch.isEmpty { return }
            do {
                let records = try await commit(batch.map(\.item))
                for (waiting, record) in zip(batch, records) { waiting.continuation.resume(returning: record) }
            } catch let error as StorageError where error.code == .conflict && batch.count > 1 {
                // One bad item (a duplicate serial) must not fail its neighbours: retry the batch one by one.
                for waiting in batch {
                    do {
                        let records = try await commit([waiting.item])
                        waiting.continuation.resume(returning: records[0])
                    } catch {
                        waiting.continuation.resume(throwing: error)
                    }
                }
            } catch {
                // The store is unavailable: everyone waiting fails now, nobody waits for a second attempt.
                for waiting in batch { waiting.continuation.resume(throwing: error) }
            }
        }
    }
}
