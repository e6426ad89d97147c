import Foundation
import SigilCore
import SigilCrypto
import SigilStore
import SigilTestSupport
import Testing

/// The `CertificateInventory` contract, run against every store in `StoreFactory.all`.
@Suite("CertificateInventory contract")
struct CertificateInventoryContractTests {
    static let now = TestPKI.referenceDate
    static let web = try! SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/web")
    static let db = try! SPIFFEID(parsing: "spiffe://example.org/ns/default/sa/db")

    let pki: TestPKI
    let next: AuthorityRecord

    init() throws {
        pki = try TestPKI()
        next = try AuthorityFactory.makeIntermediate(
            pki.configuration, parent: pki.root, parentKey: pki.rootKey, state: .prepared, at: Self.now
        ).record
    }

    /// A store holding the fixture's root and both intermediates.
    func withAuthorities(_ factory: StoreFactory, _ body: (any CAStore) async throws -> Void) async throws {
        try await factory.withStore { subject async throws in
            try await subject.store.insertAuthority(pki.root, key: pki.rootKey)
            try await subject.store.insertAuthority(pki.intermediate, key: pki.intermediateKey)
            try await subject.store.insertAuthority(next, key: nil)
            try await body(subject.store)
        }
    }

    static func record(
        _ id: SPIFFEID = web, authority: AuthorityRecord, issuedAt: TimeInterval = 0, lifetime: TimeInterval = 3600,
        revokedAt: Date? = nil
    ) throws -> InventoryRecord {
        let issued = now.addingTimeInterval(issuedAt)
        return InventoryRecord(
            serial: try SerialNumber.random(), spiffeID: id, authorityID: authority.id,
            notBefore: issued - .seconds(30),
            notAfter: issued.addingTimeInterval(lifetime), publicKeySHA256: hexString(try SecureRandom.bytes(32)),
            issuedAt: issued, revokedAt: revokedAt)
    }

    @Test(
        "recorded certificates read back by identity and by authority, in issuance order", arguments: StoreFactory.all)
    func recordAndRead(_ factory: StoreFactory) async throws {
        let first = try Self.record(authority: pki.intermediate, issuedAt: 0)
        let second = try Self.record(authority: next, issuedAt: 10)
        let other = try Self.record(Self.db, authority: pki.intermediate, issuedAt: 20)
        try await withAuthorities(factory) { store async throws in
            for record in [second, other, first] { try await store.recordIssued(record) }
            #expect(try await store.liveCertificates(spiffeID: Self.web, at: Self.now) == [first, second])
            #expect(try await store.liveCertificates(spiffeID: Self.db, at: Self.now) == [other])
            #expect(try await store.liveCertificates(authorityID: pki.intermediate.id, at: Self.now) == [first, other])
            #expect(try await store.liveCertificates(authorityID: next.id, at: Self.now) == [second])
            #expect(try await store.liveCertificates(authorityID: pki.root.id, at: Self.now).isEmpty)
        }
    }

    @Test("live identities count live certificates and those expiring within each horizon", arguments: StoreFactory.all)
    func liveIdentities(_ factory: StoreFactory) async throws {
        let records = [
            try Self.record(authority: pki.intermediate, lifetime: 600),
            try Self.record(authority: next, lifetime: 3600),
            try Self.record(authority: next, lifetime: 120),
            try Self.record(Self.db, authority: pki.intermediate, lifetime: 7200),
            try Self.record(Self.db, authority: pki.intermediate, revokedAt: Self.now),
            try Self.record(Self.db, authority: pki.intermediate, lifetime: -10),
        ]
        try await withAuthorities(factory) { store async throws in
            #expect(try await store.liveIdentities(at: Self.now, expiringWithin: [.seconds(300)]).isEmpty)
            for record in records { try await store.recordIssued(record) }
            let summaries = try await store.liveIdentities(
                at: Self.now, expiringWithin: [.seconds(300), .seconds(900), .seconds(3600)])
            #expect(
                summaries == [
                    IdentitySummary(
                        spiffeID: Self.db.description, live: 1, soonestExpiry: Self.now + .seconds(7200),
                        expiringWithin: [0, 0, 0]),
                    IdentitySummary(
                        spiffeID: Self.web.description, live: 3, soonestExpiry: Self.now + .seconds(120),
                        expiringWithin: [1, 2, 3]),
                ])
            #expect(summaries[1].namespace == "default" && summaries[1].serviceAccount == "web")
        }
    }

    @Test("live counts group unexpired, unrevoked certificates by authority", arguments: StoreFactory.all)
    func liveCounts(_ factory: StoreFactory) async throws {
        let records = [
            try Self.record(authority: pki.intermediate),
            try Self.record(Self.db, authority: pki.intermediate),
            try Self.record(authority: next),
            try Self.record(authority: next, lifetime: 60),
            try Self.record(authority: next, revokedAt: Self.now),
        ]
        try await withAuthorities(factory) { store async throws in
            #expect(try await store.liveCounts(at: Self.now).isEmpty)
            for record in records { try await store.recordIssued(record) }
            #expect(try await store.liveCounts(at: Self.now) == [pki.intermediate.id: 2, next.id: 2])
            #expect(try await store.liveCounts(at: Self.now + .seconds(60)) == [pki.intermediate.id: 2, next.id: 1])
            #expect(try await store.liveCounts(at: Self.now + .seconds(3600)).isEmpty)
        }
    }

    @Test("a certificate is live strictly before its notAfter", arguments: StoreFactory.all)
    func expiryBoundary(_ factory: StoreFactory) async throws {
        let record = try Self.record(authority: pki.intermediate, lifetime: 600)
        try await withAuthorities(factory) { store async throws in
            try await store.recordIssued(record)
            #expect(try await store.liveCertificates(spiffeID: Self.web, at: record.notAfter - .seconds(1)) == [record])
            #expect(try await store.liveCertificates(spiffeID: Self.web, at: record.notAfter).isEmpty)
            #expect(try await store.liveCertificates(authorityID: pki.intermediate.id, at: record.notAfter).isEmpty)
        }
    }

    @Test("revoked certificates are not live", arguments: StoreFactory.all)
    func revokedAreNotLive(_ factory: StoreFactory) async throws {
        let revoked = try Self.record(authority: pki.intermediate, revokedAt: Self.now)
        try await withAuthorities(factory) { store async throws in
            try await store.recordIssued(revoked)
            #expect(try await store.liveCertificates(spiffeID: Self.web, at: Self.now).isEmpty)
            #expect(try await store.liveCertificates(authorityID: pki.intermediate.id, at: Self.now).isEmpty)
            #expect(try await store.liveCounts(at: Self.now).isEmpty)
        }
    }

    @Test("a serial is recorded once", arguments: StoreFactory.all)
    func duplicateSerial(_ factory: StoreFactory) async throws {
        let record = try Self.record(authority: pki.intermediate)
        let sameSerial = InventoryRecord(
            serial: record.serial, spiffeID: Self.db, authorityID: next.id, notBefore: record.notBefore,
            notAfter: record.notAfter, publicKeySHA256: record.publicKeySHA256, issuedAt: record.issuedAt)
        try await withAuthorities(factory) { store async throws in
            try await store.recordIssued(record)
            await expectStorageError(.conflict) { try await store.recordIssued(sameSerial) }
            #expect(try await store.liveCertificates(spiffeID: Self.db, at: Self.now).isEmpty)
        }
    }

    @Test("a certificate must name a known authority", arguments: StoreFactory.all)
    func unknownAuthority(_ factory: StoreFactory) async throws {
        let stranger = try TestPKI().intermediate
        try await withAuthorities(factory) { store async throws in
            await expectStorageError(.conflict) { try await store.recordIssued(Self.record(authority: stranger)) }
            #expect(try await store.liveCounts(at: Self.now).isEmpty)
        }
    }

    @Test("an issued leaf's inventory row round trips", arguments: StoreFactory.all)
    func issuedLeafRow(_ factory: StoreFactory) async throws {
        let leaf = try pki.issueLeaf(for: Self.web)
        let row = leaf.issued.inventoryRecord(issuedAt: Self.now)
        try await withAuthorities(factory) { store async throws in
            try await store.recordIssued(row)
            #expect(try await store.liveCertificates(spiffeID: Self.web, at: Self.now) == [row])
        }
    }
}
