import Foundation
import SigilCore
import SigilCrypto
import SigilStore
import SigilTestSupport
import Testing

/// What the stores promise about trust: authority rows are authenticated, keys of authorities that no longer
/// sign are erased, the audit chain is keyed and older chains are re-linked once, and single certificates can be
/// looked up and revoked. Rows are tampered with through SQL, as a database writer without the KEK could.
@Suite("Store trust contract")
struct TrustContractTests {
    static let now = TestPKI.referenceDate

    let pki: TestPKI
    /// A second intermediate under the same root, retired.
    let retired: AuthorityRecord
    let retiredKey: PrivateKey

    init() throws {
        pki = try TestPKI()
        let made = try AuthorityFactory.makeIntermediate(
            pki.configuration, parent: pki.root, parentKey: pki.rootKey, state: .retired, at: Self.now)
        retired = made.record
        retiredKey = made.key
    }

    func withAuthorities(_ factory: StoreFactory, _ body: (StoreUnderTest) async throws -> Void) async throws {
        try await factory.withStore { subject async throws in
            try await subject.store.insertAuthority(pki.root, key: pki.rootKey)
            try await subject.store.insertAuthority(pki.intermediate, key: pki.intermediateKey)
            try await subject.store.insertAuthority(retired, key: retiredKey)
            try await body(subject)
        }
    }

    // MARK: Authority rows

    @Test(
        "an authority row changed behind the store's back is rejected: not served, not changed, its key not used",
        arguments: StoreFactory.tamperable)
    func tamperedRowIsRejected(_ factory: StoreFactory) async throws {
        let tamper = try #require(factory.tamper)
        try await withAuthorities(factory) { subject async throws in
            // A retired intermediate put back to work: with the key of a leaked backup it would sign again.
            try await tamper(subject.location, "UPDATE authorities SET state = 'prepared' WHERE id = '\(retired.id)'")
            let rows = try await subject.store.loadAuthorities()
            #expect(rows.records.map(\.id).sorted() == [pki.intermediate.id, pki.root.id].sorted())
            #expect(rows.rejected.map(\.id) == [retired.id])
            #expect(rows.rejected.first?.reason.contains("integrity") == true)
            await expectStorageError(.corrupt) { try await subject.store.authorityKey(id: retired.id) }
            await expectStorageError(.corrupt) {
                try await subject.store.updateAuthorityStates([(retired.id, .active)], at: Self.now, audit: [])
            }
        }
    }

    @Test(
        "a row inserted without the KEK (an upstream root nobody imported) is rejected",
        arguments: StoreFactory.tamperable)
    func insertedRowIsRejected(_ factory: StoreFactory) async throws {
        let tamper = try #require(factory.tamper)
        try await withAuthorities(factory) { subject async throws in
            try await tamper(
                subject.location,
                """
                INSERT INTO authorities (id, role, state, certificate, parent_id, is_upstream, created_at, updated_at)
                SELECT 'root-forged', role, 'prepared', certificate, NULL, TRUE, created_at, updated_at FROM authorities WHERE id = '\(pki.root.id)'
                """)
            let rows = try await subject.store.loadAuthorities()
            #expect(rows.rejected.map(\.id) == ["root-forged"])
            #expect(!rows.records.contains { $0.id == "root-forged" })
        }
    }

    @Test(
        "rows written before authority MACs existed get theirs once, when the store is opened",
        arguments: StoreFactory.tamperable)
    func macMigration(_ factory: StoreFactory) async throws {
        let tamper = try #require(factory.tamper)
        try await withAuthorities(factory) { subject async throws in
            try await tamper(
                subject.location,
                "UPDATE authorities SET mac = NULL; DELETE FROM settings WHERE key = 'format.authority_mac'")
            let reopened = try await subject.reopen()
            let rows = try await reopened.loadAuthorities()
            #expect(rows.rejected.isEmpty)
            #expect(rows.records.count == 3)
        }
    }

    @Test(
        "a state that no longer signs erases the key in the same change, keeping the certificate and the final CRL",
        arguments: StoreFactory.all)
    func keyErasure(_ factory: StoreFactory) async throws {
        try await withAuthorities(factory) { subject async throws in
            let store = subject.store
            // Inserted as retired with a key (as an older version left it): the key is there until a change erases it.
            #expect(try await store.authorities().first { $0.id == retired.id }?.hasKey == true)
            let final: [UInt8] = Array("a final CRL".utf8)
            try await store.updateAuthorityStates(
                [(retired.id, .retired)], at: Self.now, finalCRLs: [retired.id: final], audit: [])
            try await store.updateAuthorityStates([(pki.intermediate.id, .tainted)], at: Self.now, audit: [])
            let records = try await store.authorities()
            let erased = try #require(records.first { $0.id == retired.id })
            #expect(!erased.hasKey && erased.finalCRL == final && erased.certificate == retired.certificate)
            #expect(records.first { $0.id == pki.intermediate.id }?.hasKey == false)
            #expect(records.first { $0.id == pki.root.id }?.hasKey == true)
            await expectStorageError(.notFound) { try await store.authorityKey(id: retired.id) }
            await expectStorageError(.notFound) { try await store.authorityKey(id: pki.intermediate.id) }
            // Revoking later keeps the final CRL stored before.
            try await store.updateAuthorityStates([(retired.id, .tainted)], at: Self.now, audit: [])
            try await store.updateAuthorityStates([(retired.id, .revoked)], at: Self.now, audit: [])
            #expect(try await store.authorities().first { $0.id == retired.id }?.finalCRL == final)
        }
    }

    @Test("revoking a root bumps the bundle sequence once, erasing its key again does not", arguments: StoreFactory.all)
    func revokedRootSequence(_ factory: StoreFactory) async throws {
        try await factory.withStore { subject async throws in
            let store = subject.store
            var root = pki.root
            root.state = .tainted
            try await store.insertAuthority(root, key: pki.rootKey)
            let before = try await store.bundleSequence()
            try await store.updateAuthorityStates([(root.id, .revoked)], at: Self.now, audit: [])
            try await store.updateAuthorityStates([(root.id, .revoked)], at: Self.now, audit: [])
            #expect(try await store.bundleSequence() == before + 1)
        }
    }

    // MARK: Certificates

    func leaf(
        _ authority: AuthorityRecord, lifetime: TimeInterval = 3600, authenticatedAt: Date? = nil
    ) throws -> InventoryRecord {
        InventoryRecord(
            serial: try SerialNumber.random(), spiffeID: try pki.workloadID(), authorityID: authority.id,
            notBefore: Self.now - .seconds(30),
            notAfter: Self.now.addingTimeInterval(lifetime), publicKeySHA256: hexString(try SecureRandom.bytes(32)),
            issuedAt: Self.now,
            authenticatedAt: authenticatedAt)
    }

    @Test(
        "a certificate is found by serial with when its identity was proven; unknown serials are not",
        arguments: StoreFactory.all)
    func lookUp(_ factory: StoreFactory) async throws {
        try await withAuthorities(factory) { subject async throws in
            let store = subject.store
            let issued = try leaf(pki.intermediate)
            let renewed = try leaf(pki.intermediate, authenticatedAt: Self.now - .seconds(7200))
            _ = try await store.commitIssuance(issued, event: AuditEvent(time: Self.now, actor: "test", action: .issue))
            _ = try await store.commitIssuance(
                renewed, event: AuditEvent(time: Self.now, actor: "test", action: .renew))
            #expect(try await store.certificate(serial: issued.serial) == issued)
            #expect(
                try await store.certificate(serial: issued.serial)?.authenticatedAt == Self.now,
                "a token issuance: proven now")
            #expect(try await store.certificate(serial: renewed.serial)?.authenticatedAt == Self.now - .seconds(7200))
            #expect(try await store.certificate(serial: try SerialNumber.random()) == nil)
        }
    }

    @Test("a certificate is revoked once, with its record, and listed until it expires", arguments: StoreFactory.all)
    func revokeCertificate(_ factory: StoreFactory) async throws {
        try await withAuthorities(factory) { subject async throws in
            let store = subject.store
            let target = try leaf(pki.intermediate)
            let short = try leaf(pki.intermediate, lifetime: 60)
            let other = try leaf(retired)
            for record in [target, short, other] { try await store.recordIssued(record) }
            let event = AuditEvent(
                time: Self.now, actor: "admin:uid=0", action: .adminRevoke, serial: target.serial.hex)
            let revoked = try await store.revokeCertificate(serial: target.serial, at: Self.now, audit: [event])
            #expect(revoked.revokedAt == Self.now && revoked.serial == target.serial)
            _ = try await store.revokeCertificate(serial: short.serial, at: Self.now, audit: [])
            #expect(try await store.certificate(serial: target.serial)?.revokedAt == Self.now)
            #expect(try await store.lastAuditRecord()?.event.serial == target.serial.hex)
            #expect(
                try await store.revokedCertificates(authorityID: pki.intermediate.id, at: Self.now).map(\.serial).sorted
                { $0.hex < $1.hex }
                    == [target.serial, short.serial].sorted { $0.hex < $1.hex })
            #expect(
                try await store.revokedCertificates(authorityID: pki.intermediate.id, at: Self.now + .seconds(120)).map(
                    \.serial) == [target.serial],
                "an expired certificate drops out")
            #expect(try await store.revokedCertificates(authorityID: retired.id, at: Self.now).isEmpty)
            #expect(try await store.liveCertificates(authorityID: pki.intermediate.id, at: Self.now).isEmpty)
            await expectStorageError(.conflict) {
                _ = try await store.revokeCertificate(serial: target.serial, at: Self.now, audit: [])
            }
            await expectStorageError(.notFound) {
                _ = try await store.revokeCertificate(serial: try SerialNumber.random(), at: Self.now, audit: [])
            }
        }
    }

    // MARK: Audit chain

    static func event(_ index: Int) -> AuditEvent {
        AuditEvent(time: now + .seconds(Int64(index)), actor: "operator:cli", action: .issue, reason: "event \(index)")
    }

    /// Rewrites the chain of `subject` as a version with SHA-256 links wrote it; `edit` changes a record first.
    func downgrade(
        _ subject: StoreUnderTest, tamper: (StoreLocation, String) async throws -> Void, editing edit: Int64? = nil
    ) async throws {
        var previous = AuditRecord.genesisHash
        var statements = ["DELETE FROM settings WHERE key = 'format.audit_chain'"]
        for record in try await subject.store.auditRecords(AuditQuery()) {
            let hash = AuditRecord.legacyHash(record.event, sequence: record.sequence, previousHash: previous)
            statements.append(
                "UPDATE audit SET prev_hash = '\(previous)', hash = '\(hash)' WHERE seq = \(record.sequence)")
            previous = hash
        }
        if let edit { statements.append("UPDATE audit SET reason = 'edited' WHERE seq = \(edit)") }
        try await tamper(subject.location, statements.joined(separator: ";\n"))
    }

    @Test(
        "a chain of SHA-256 links is re-linked under the keyed link once, with a record of it",
        arguments: StoreFactory.tamperable)
    func relink(_ factory: StoreFactory) async throws {
        let tamper = try #require(factory.tamper)
        try await factory.withStore { subject async throws in
            for index in 1...3 { _ = try await subject.store.appendAudit(Self.event(index)) }
            try await downgrade(subject, tamper: tamper)
            let reopened = try await subject.reopen()
            let records = try await reopened.auditRecords(AuditQuery())
            #expect(records.map(\.sequence) == [1, 2, 3, 4])
            #expect(records.prefix(3).map(\.event) == (1...3).map { Self.event($0) })
            let relinked = try #require(records.last?.event)
            #expect(
                relinked.action == .relink && relinked.outcome == .success
                    && relinked.reason?.contains("3 record(s)") == true)
            var verifier = AuditChainVerifier(key: AuditChainKey(auditKey: try await reopened.auditKey()))
            for record in records { #expect(verifier.check(record) == nil) }
            // Once: opening again changes nothing.
            #expect(try await subject.reopen().auditRecords(AuditQuery()) == records)
        }
    }

    @Test(
        "re-linking a chain that was already broken keeps the evidence in the new chain",
        arguments: StoreFactory.tamperable)
    func relinkBroken(_ factory: StoreFactory) async throws {
        let tamper = try #require(factory.tamper)
        try await factory.withStore { subject async throws in
            for index in 1...3 { _ = try await subject.store.appendAudit(Self.event(index)) }
            try await downgrade(subject, tamper: tamper, editing: 2)
            let last = try #require(try await subject.reopen().lastAuditRecord()?.event)
            #expect(last.action == .relink && last.outcome == .failure && last.code == "audit_chain_broken")
            #expect(last.reason?.contains("broken at record 2") == true, "\(last.reason ?? "")")
        }
    }
}
