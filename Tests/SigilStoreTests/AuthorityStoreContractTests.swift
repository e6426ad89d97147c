import Foundation
import SigilCore
import SigilCrypto
import SigilStore
import SigilTestSupport
import Testing

/// The `AuthorityStore` contract, run against every store in `StoreFactory.all`.
@Suite("AuthorityStore contract")
struct AuthorityStoreContractTests {
    static let now = TestPKI.referenceDate

    /// `records` by id: stores order by creation time only, and a root and its first intermediate share one.
    static func byID(_ records: [AuthorityRecord]) -> [AuthorityRecord] { records.sorted { $0.id < $1.id } }

    /// Expects a write that runs in a transaction to fail with `code` (on every backend alike).
    static func expectTransactionError<R>(
        _ code: StorageError.Code, on factory: StoreFactory, sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () async throws -> R
    ) async {
        await expectStorageError(code, sourceLocation: sourceLocation, body)
    }

    @Test("an empty store has no authorities, sequence 0 and no settings", arguments: StoreFactory.all)
    func emptyStore(_ factory: StoreFactory) async throws {
        try await factory.withStore { subject async throws in
            #expect(try await subject.store.authorities().isEmpty)
            #expect(try await subject.store.bundleSequence() == 0)
            #expect(try await subject.store.setting("trust_domain") == nil)
            #expect(try await subject.store.loadAuthorityConfiguration() == nil)
        }
    }

    @Test("authorities and their keys read back as written", arguments: StoreFactory.all)
    func insertAndRead(_ factory: StoreFactory) async throws {
        let pki = try TestPKI()
        try await factory.withStore { subject async throws in
            let store = subject.store
            try await store.insertAuthority(pki.root, key: pki.rootKey)
            try await store.insertAuthority(pki.intermediate, key: pki.intermediateKey)

            #expect(Self.byID(try await store.authorities()) == Self.byID([pki.root, pki.intermediate]))
            #expect(try await store.authorityKey(id: pki.root.id).publicKey() == pki.rootKey.publicKey())
            #expect(try await store.authorityKey(id: pki.intermediate.id).pkcs8DER() == pki.intermediateKey.pkcs8DER())
        }
    }

    @Test(
        "every field of a record survives, including upstream flag, parent and update time", arguments: StoreFactory.all
    )
    func recordFields(_ factory: StoreFactory) async throws {
        let pki = try TestPKI()
        let upstream = AuthorityRecord(
            role: .root, state: .active, certificate: pki.root.certificate, parentID: nil, isUpstream: true,
            createdAt: Self.now, updatedAt: Self.now + .seconds(5), hasKey: false)
        var intermediate = pki.intermediate
        intermediate.state = .prepared
        try await factory.withStore { subject async throws in
            try await subject.store.insertAuthority(upstream, key: nil)
            try await subject.store.insertAuthority(intermediate, key: pki.intermediateKey)
            let read = AuthoritySet(try await subject.store.authorities())
            #expect(read.records == AuthoritySet([upstream, intermediate]).records)
            #expect(read.record(id: upstream.id)?.isUpstream == true)
            #expect(read.record(id: upstream.id)?.updatedAt == Self.now + .seconds(5))
            #expect(read.record(id: intermediate.id)?.parentID == upstream.id)
            #expect(read.record(id: upstream.id)?.hasKey == false && read.record(id: intermediate.id)?.hasKey == true)
        }
    }

    @Test("authorities come back oldest first", arguments: StoreFactory.all)
    func ordering(_ factory: StoreFactory) async throws {
        let older = try TestPKI(createdAt: Self.now)
        let newer = try TestPKI(createdAt: Self.now + .seconds(3600))
        var newerRoot = newer.root
        newerRoot.state = .prepared
        try await factory.withStore { subject async throws in
            try await subject.store.insertAuthority(newerRoot, key: newer.rootKey)
            try await subject.store.insertAuthority(older.root, key: older.rootKey)
            #expect(try await subject.store.authorities().map(\.id) == [older.root.id, newerRoot.id])
        }
    }

    @Test("asking for a missing key is not_found", arguments: StoreFactory.all)
    func missingKeys(_ factory: StoreFactory) async throws {
        let pki = try TestPKI()
        try await factory.withStore { subject async throws in
            try await subject.store.insertAuthority(pki.root, key: nil)
            await expectStorageError(.notFound) { try await subject.store.authorityKey(id: pki.root.id) }
            await expectStorageError(.notFound) { try await subject.store.authorityKey(id: "root-0000000000000000") }
        }
    }

    @Test("an authority id is inserted once", arguments: StoreFactory.all)
    func duplicateID(_ factory: StoreFactory) async throws {
        let pki = try TestPKI()
        try await factory.withStore { subject async throws in
            try await subject.store.insertAuthority(pki.root, key: pki.rootKey)
            var again = pki.root
            again.state = .retired
            await Self.expectTransactionError(.conflict, on: factory) {
                try await subject.store.insertAuthority(again, key: pki.rootKey)
            }
            #expect(try await subject.store.authorities() == [pki.root])
        }
    }

    @Test("at most one authority per role is active", arguments: StoreFactory.all)
    func oneActivePerRole(_ factory: StoreFactory) async throws {
        let first = try TestPKI()
        let second = try TestPKI()
        try await factory.withStore { subject async throws in
            let store = subject.store
            try await store.insertAuthority(first.root, key: first.rootKey)
            try await store.insertAuthority(first.intermediate, key: first.intermediateKey)
            await Self.expectTransactionError(.conflict, on: factory) {
                try await store.insertAuthority(second.root, key: second.rootKey)
            }

            var preparedRoot = second.root
            preparedRoot.state = .prepared
            try await store.insertAuthority(preparedRoot, key: second.rootKey)
            var secondIntermediate = second.intermediate  // active, and its parent is now in the store
            await Self.expectTransactionError(.conflict, on: factory) {
                try await store.insertAuthority(secondIntermediate, key: second.intermediateKey)
            }
            secondIntermediate.state = .prepared
            try await store.insertAuthority(secondIntermediate, key: second.intermediateKey)

            await Self.expectTransactionError(.conflict, on: factory) {
                try await store.updateAuthorityStates([(preparedRoot.id, .active)], at: Self.now)
            }
            let active = try await store.authorities().filter { $0.state == .active }.map(\.id)
            #expect(Set(active) == [first.root.id, first.intermediate.id])
        }
    }

    @Test("an intermediate's parent must exist", arguments: StoreFactory.all)
    func parentMustExist(_ factory: StoreFactory) async throws {
        let pki = try TestPKI()
        try await factory.withStore { subject async throws in
            await Self.expectTransactionError(.conflict, on: factory) {
                try await subject.store.insertAuthority(pki.intermediate, key: pki.intermediateKey)
            }
            #expect(try await subject.store.authorities().isEmpty)
        }
    }

    @Test(
        "activating a successor and retiring its predecessor is one change, in either order",
        arguments: StoreFactory.all, [false, true])
    func activateAndRetire(_ factory: StoreFactory, _ retireFirst: Bool) async throws {
        let pki = try TestPKI()
        let next = try AuthorityFactory.makeIntermediate(
            pki.configuration, parent: pki.root, parentKey: pki.rootKey, state: .prepared, at: Self.now + .seconds(60))
        try await factory.withStore { subject async throws in
            let store = subject.store
            try await store.insertAuthority(pki.root, key: pki.rootKey)
            try await store.insertAuthority(pki.intermediate, key: pki.intermediateKey)
            try await store.insertAuthority(next.record, key: next.key)

            let later = Self.now + .seconds(3600)
            var changes: [(id: String, state: AuthorityState)] = [
                (next.record.id, .active), (pki.intermediate.id, .retired),
            ]
            if retireFirst { changes.reverse() }
            try await store.updateAuthorityStates(changes, at: later)

            let set = AuthoritySet(try await store.authorities())
            #expect(set.active(.intermediate)?.id == next.record.id)
            #expect(set.record(id: pki.intermediate.id)?.state == .retired)
            #expect(set.record(id: pki.intermediate.id)?.updatedAt == later)
            #expect(set.record(id: next.record.id)?.updatedAt == later)
            #expect(set.record(id: pki.root.id)?.updatedAt == Self.now, "untouched records keep their update time")
        }
    }

    @Test("a state change naming an unknown authority changes nothing", arguments: StoreFactory.all)
    func unknownAuthorityInChange(_ factory: StoreFactory) async throws {
        let pki = try TestPKI()
        try await factory.withStore { subject async throws in
            let store = subject.store
            try await store.insertAuthority(pki.root, key: pki.rootKey)
            try await store.insertAuthority(pki.intermediate, key: pki.intermediateKey)
            await Self.expectTransactionError(.notFound, on: factory) {
                try await store.updateAuthorityStates(
                    [(pki.intermediate.id, .retired), ("intermediate-ffffffffffffffff", .active)], at: Self.now)
            }
            #expect(Self.byID(try await store.authorities()) == Self.byID([pki.root, pki.intermediate]))
        }
    }

    @Test("an authority change commits with its audit records, or neither does", arguments: StoreFactory.all)
    func changesCommitWithTheirAudit(_ factory: StoreFactory) async throws {
        let pki = try TestPKI()
        func event(_ action: AuditAction, _ id: String) -> AuditEvent {
            AuditEvent(
                time: Self.now, actor: "test", action: action, outcome: .success, reason: "contract", authorityID: id)
        }
        try await factory.withStore { subject async throws in
            let store = subject.store
            try await store.insertAuthority(pki.root, key: pki.rootKey, audit: [event(.initialize, pki.root.id)])
            try await store.insertAuthority(
                pki.intermediate, key: pki.intermediateKey, audit: [event(.initialize, pki.intermediate.id)])
            try await store.updateAuthorityStates(
                [(pki.intermediate.id, .tainted)], at: Self.now,
                audit: [event(.taint, pki.intermediate.id), event(.adminRotate, pki.intermediate.id)])
            // A refused change (unknown authority) appends nothing either.
            await Self.expectTransactionError(.notFound, on: factory) {
                try await store.updateAuthorityStates(
                    [("intermediate-ffffffffffffffff", .active)], at: Self.now,
                    audit: [event(.activate, "intermediate-ffffffffffffffff")])
            }
            let records = try await store.auditRecords(AuditQuery(afterSequence: 0, limit: 100))
            #expect(records.map(\.event.action) == [.initialize, .initialize, .taint, .adminRotate])
            #expect(
                records.map(\.event.authorityID) == [
                    pki.root.id, pki.intermediate.id, pki.intermediate.id, pki.intermediate.id,
                ])
            #expect(records.map(\.sequence) == [1, 2, 3, 4])
        }
    }

    @Test("the bundle sequence increases on every root insert and root revocation only", arguments: StoreFactory.all)
    func bundleSequence(_ factory: StoreFactory) async throws {
        let pki = try TestPKI()
        let next = try AuthorityFactory.makeRoot(pki.configuration, state: .prepared, at: Self.now + .seconds(60))
        try await factory.withStore { subject async throws in
            let store = subject.store
            #expect(try await store.bundleSequence() == 0)
            try await store.insertAuthority(pki.root, key: pki.rootKey)
            #expect(try await store.bundleSequence() == 1)
            try await store.insertAuthority(pki.intermediate, key: pki.intermediateKey)
            #expect(try await store.bundleSequence() == 1, "an intermediate is not in the bundle")
            try await store.insertAuthority(next.record, key: next.key)
            #expect(try await store.bundleSequence() == 2)
            try await store.updateAuthorityStates([(next.record.id, .active), (pki.root.id, .retired)], at: Self.now)
            #expect(try await store.bundleSequence() == 2, "retired roots stay in the bundle")
            try await store.updateAuthorityStates([(pki.intermediate.id, .revoked)], at: Self.now)
            #expect(try await store.bundleSequence() == 2, "a revoked intermediate goes to the CRL, not the bundle")
            try await store.updateAuthorityStates([(pki.root.id, .tainted)], at: Self.now)
            try await store.updateAuthorityStates([(pki.root.id, .revoked)], at: Self.now)
            #expect(try await store.bundleSequence() == 3)
        }
    }

    @Test("settings round trip and overwrite key by key", arguments: StoreFactory.all)
    func settings(_ factory: StoreFactory) async throws {
        try await factory.withStore { subject async throws in
            let store = subject.store
            try await store.setSettings(["a": "1", "b": "two"])
            try await store.setSettings(["b": "2", "c": ""])
            #expect(try await store.setting("a") == "1")
            #expect(try await store.setting("b") == "2")
            #expect(try await store.setting("c") == "")
            #expect(try await store.setting("d") == nil)
        }
    }

    @Test("the authority configuration round trips through settings", arguments: StoreFactory.all)
    func authorityConfiguration(_ factory: StoreFactory) async throws {
        let configuration = AuthorityConfiguration(
            trustDomain: try TrustDomain("cluster.local"), keyAlgorithm: .p384, rootLifetime: .seconds(90 * 86_400),
            intermediateLifetime: .seconds(12 * 3600))
        try await factory.withStore { subject async throws in
            try await subject.store.saveAuthorityConfiguration(configuration)
            #expect(try await subject.store.loadAuthorityConfiguration() == configuration)
            #expect(try await subject.store.setting(SettingKey.authorityKeyType) == "ec-p384")
        }
    }

    @Test("a reopened store sees the same authorities, keys, sequence and settings", arguments: StoreFactory.persistent)
    func reopen(_ factory: StoreFactory) async throws {
        let pki = try TestPKI()
        try await factory.withStore { subject async throws in
            try await subject.store.insertAuthority(pki.root, key: pki.rootKey)
            try await subject.store.setSettings(["trust_domain": "example.org"])
            let again = try await subject.reopen()
            #expect(try await again.authorities() == [pki.root])
            #expect(try await again.authorityKey(id: pki.root.id).publicKey() == pki.rootKey.publicKey())
            #expect(try await again.bundleSequence() == 1)
            #expect(try await again.setting("trust_domain") == "example.org")
        }
    }

    @Test("a store does not open under another key-encryption key", arguments: StoreFactory.persistent)
    func wrongKEK(_ factory: StoreFactory) async throws {
        let pki = try TestPKI()
        try await factory.withStore { subject async throws in
            try await subject.store.insertAuthority(pki.root, key: pki.rootKey)
            // The audit key (sealed under the KEK) links the chain: without it the store cannot append, so it
            // does not open at all, and says why.
            await expectStorageError(.corrupt) { _ = try await subject.reopen(kek: KeyEncryptionKey.generate()) }
        }
    }
}
