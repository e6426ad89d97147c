import Foundation
import SigilCore
import SigilCrypto
import SigilStore
import SigilTestSupport
import Testing

/// The `AuditStore` contract, run against every store in `StoreFactory.all`.
@Suite("AuditStore contract")
struct AuditStoreContractTests {
    static let now = TestPKI.referenceDate
    static let web = try! SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/web")

    static func event(
        _ index: Int, action: AuditAction = .issue, outcome: AuditOutcome = .success, subject: String? = nil,
        serial: String? = nil
    ) -> AuditEvent {
        AuditEvent(
            time: now + .seconds(Int64(index)), actor: "operator:cli", action: action, outcome: outcome,
            code: outcome == .failure ? "policy_denied" : nil, reason: "event \(index)", subject: subject,
            serial: serial, authorityID: "intermediate-0123456789abcdef",
            publicKeySHA256: String(repeating: "a", count: 64),
            requestID: "req-\(index)", clientAddress: "192.0.2.\(index)", tokenHMAC: String(repeating: "b", count: 64))
    }

    /// Walks `records` with the chain verifier, under `store`'s chain key.
    static func verify(_ records: [AuditRecord], in store: any CAStore) async throws -> AuditVerification {
        var verifier = AuditChainVerifier(key: AuditChainKey(auditKey: try await store.auditKey()))
        for record in records {
            if let problem = verifier.check(record) { return problem }
        }
        return verifier.result
    }

    static func inventoryRecord(_ pki: TestPKI, serial: SerialNumber? = nil) throws -> InventoryRecord {
        InventoryRecord(
            serial: try serial ?? SerialNumber.random(), spiffeID: web, authorityID: pki.intermediate.id,
            notBefore: now - .seconds(30), notAfter: now + .seconds(3600),
            publicKeySHA256: String(repeating: "c", count: 64),
            issuedAt: now)
    }

    @Test("appended events form one chain from the genesis hash and read back unchanged", arguments: StoreFactory.all)
    func appendAndRead(_ factory: StoreFactory) async throws {
        try await factory.withStore { subject async throws in
            let store = subject.store
            var appended: [AuditRecord] = []
            for index in 1...5 { appended.append(try await store.appendAudit(Self.event(index))) }
            #expect(appended.map(\.sequence) == [1, 2, 3, 4, 5])
            #expect(appended[0].previousHash == AuditRecord.genesisHash)
            let read = try await store.auditRecords(AuditQuery())
            #expect(read == appended)
            #expect(read.map(\.event) == (1...5).map { Self.event($0) })
            #expect(try await Self.verify(read, in: store) == .valid(records: 5, lastHash: appended[4].hash))
        }
    }

    @Test("concurrent appends still form one linear chain", arguments: StoreFactory.all)
    func concurrentAppends(_ factory: StoreFactory) async throws {
        try await factory.withStore { subject async throws in
            let store = subject.store
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 1...40 {
                    group.addTask { _ = try await store.appendAudit(Self.event(index)) }
                }
                try await group.waitForAll()
            }
            let read = try await store.auditRecords(AuditQuery())
            #expect(read.map(\.sequence) == Array(1...40))
            #expect(try await Self.verify(read, in: store) == .valid(records: 40, lastHash: read.last?.hash ?? ""))
            #expect(Set(read.map(\.event.requestID)).count == 40)
        }
    }

    @Test("an issuance commits its inventory row and its audit record together", arguments: StoreFactory.all)
    func commitIssuance(_ factory: StoreFactory) async throws {
        let pki = try TestPKI()
        let row = try Self.inventoryRecord(pki)
        try await factory.withStore { subject async throws in
            let store = subject.store
            try await store.insertAuthority(pki.root, key: pki.rootKey)
            try await store.insertAuthority(pki.intermediate, key: pki.intermediateKey)
            _ = try await store.appendAudit(Self.event(1, action: .initialize))
            let record = try await store.commitIssuance(row, event: Self.event(2, serial: row.serial.hex))
            #expect(record.sequence == 2)
            #expect(try await store.liveCertificates(spiffeID: Self.web, at: Self.now) == [row])
            #expect(try await store.auditRecords(AuditQuery()).last == record)
        }
    }

    @Test("a refused issuance leaves neither an inventory row nor an audit record", arguments: StoreFactory.all)
    func refusedIssuanceIsAtomic(_ factory: StoreFactory) async throws {
        let pki = try TestPKI()
        let row = try Self.inventoryRecord(pki)
        try await factory.withStore { subject async throws in
            let store = subject.store
            try await store.insertAuthority(pki.root, key: pki.rootKey)
            try await store.insertAuthority(pki.intermediate, key: pki.intermediateKey)
            _ = try await store.commitIssuance(row, event: Self.event(1, serial: row.serial.hex))
            let duplicate = try Self.inventoryRecord(pki, serial: row.serial)
            await expectStorageError(.conflict) {
                try await store.commitIssuance(duplicate, event: Self.event(2, serial: row.serial.hex))
            }
            let read = try await store.auditRecords(AuditQuery())
            #expect(read.count == 1)
            // The chain goes on from the last committed record.
            let next = try await store.appendAudit(Self.event(3))
            #expect(next.sequence == 2)
            #expect(
                try await Self.verify(try await store.auditRecords(AuditQuery()), in: store)
                    == .valid(records: 2, lastHash: next.hash))
        }
    }

    @Test("queries filter by time, subject, serial, action, outcome and position", arguments: StoreFactory.all)
    func queries(_ factory: StoreFactory) async throws {
        try await factory.withStore { subject async throws in
            let store = subject.store
            let events = [
                Self.event(1, action: .initialize),
                Self.event(2, subject: Self.web.description, serial: "0a0b"),
                Self.event(3, action: .deny, outcome: .failure, subject: Self.web.description),
                Self.event(4, subject: "spiffe://example.org/ns/default/sa/db", serial: "0c0d"),
                Self.event(5, action: .rotate),
            ]
            for event in events { _ = try await store.appendAudit(event) }
            func sequences(_ query: AuditQuery) async throws -> [Int64] {
                try await store.auditRecords(query).map(\.sequence)
            }
            #expect(
                try await sequences(AuditQuery(since: Self.now + .seconds(2), until: Self.now + .seconds(4))) == [2, 3])
            #expect(try await sequences(AuditQuery(subject: Self.web.description)) == [2, 3])
            #expect(try await sequences(AuditQuery(serial: "0C0D")) == [4])
            #expect(try await sequences(AuditQuery(action: .issue)) == [2, 4])
            #expect(try await sequences(AuditQuery(outcome: .failure)) == [3])
            #expect(try await sequences(AuditQuery(afterSequence: 3)) == [4, 5])
            #expect(try await sequences(AuditQuery(afterSequence: 1, limit: 2)) == [2, 3])
            #expect(try await sequences(AuditQuery(action: .issue, outcome: .failure)).isEmpty)
            #expect(try await sequences(AuditQuery(limit: 2, newestFirst: true)) == [5, 4])
            #expect(try await sequences(AuditQuery(action: .issue, newestFirst: true)) == [4, 2])
        }
    }

    @Test("counts group issue, renew and deny records by minute, action and code", arguments: StoreFactory.all)
    func counts(_ factory: StoreFactory) async throws {
        try await factory.withStore { subject async throws in
            let store = subject.store
            let minute = Self.now.microsecondsSince1970 / 60_000_000
            func at(_ seconds: Int64, _ action: AuditAction, _ code: String? = nil) -> AuditEvent {
                var event = Self.event(0, action: action, outcome: code == nil ? .success : .failure)
                event.time = Date(timeIntervalSince1970: Double(minute * 60 + seconds))
                event.code = code
                return event
            }
            for event in [
                at(-60, .issue), at(1, .issue), at(2, .issue), at(3, .renew), at(4, .deny, "token_expired"),
                at(5, .deny, "token_expired"), at(6, .deny, "rate_limited"), at(61, .issue), at(7, .rotate),
            ] {
                _ = try await store.appendAudit(event)
            }
            let counts = try await store.auditCounts(since: Date(timeIntervalSince1970: Double(minute * 60)))
            let seen = Set(counts.map { "\($0.minute - minute) \($0.action.rawValue) \($0.code ?? "-") \($0.count)" })
            #expect(
                seen == [
                    "0 issue - 2", "0 renew - 1", "0 deny token_expired 2", "0 deny rate_limited 1", "1 issue - 1",
                ])
        }
    }

    @Test("the audit key is 32 bytes, stable and distinct per store", arguments: StoreFactory.all)
    func auditKey(_ factory: StoreFactory) async throws {
        let first = try await factory.withStore { subject async throws -> [UInt8] in
            let key = try await subject.store.auditKey()
            #expect(key.count == 32)
            #expect(try await subject.store.auditKey() == key)
            return key
        }
        let second = try await factory.withStore { subject async throws in try await subject.store.auditKey() }
        #expect(first != second)
    }

    @Test(
        "the audit key and chain survive reopening; the key is sealed under the KEK", arguments: StoreFactory.persistent
    )
    func auditKeyPersists(_ factory: StoreFactory) async throws {
        try await factory.withStore { subject async throws in
            let key = try await subject.store.auditKey()
            let record = try await subject.store.appendAudit(Self.event(1))
            let again = try await subject.reopen()
            #expect(try await again.auditKey() == key)
            #expect(try await again.auditRecords(AuditQuery()) == [record])
            await expectStorageError(.corrupt) { _ = try await subject.reopen(kek: KeyEncryptionKey.generate()) }
        }
    }
}
