import Foundation
import SigilCore
import SigilCrypto
import SigilTestSupport
import Testing

@Suite("AuthorityFactory")
struct AuthorityFactoryTests {
    static let now = TestPKI.referenceDate + .milliseconds(1500)
    static let configuration = AuthorityConfiguration(trustDomain: TestPKI.trustDomain)

    @Test("a root is a self-signed CA with the trust domain's ID, backdated, for the configured lifetime")
    func root() throws {
        let (record, key) = try AuthorityFactory.makeRoot(Self.configuration, state: .prepared, at: Self.now)
        let certificate = record.certificate
        #expect(record.role == .root)
        #expect(record.state == .prepared)
        #expect(record.parentID == nil)
        #expect(!record.isUpstream)
        #expect(record.createdAt == Self.now)
        #expect(record.id == "root-" + certificate.sha256Fingerprint.prefix(16))
        #expect(certificate.isSelfIssued && certificate.isSigned(by: certificate))
        #expect(certificate.publicKey == (try key.publicKey()))
        #expect(certificate.notBefore == Self.now.truncatedToSecond - .seconds(30))
        #expect(certificate.notAfter == Self.now.truncatedToSecond + .seconds(365 * 86_400))
        #expect(certificate.basicConstraints == Flagged(value: BasicConstraints(isCA: true), critical: true))
        #expect(certificate.keyUsage == Flagged(value: [.keyCertSign, .cRLSign], critical: true))
        #expect(certificate.subjectAlternativeNames?.value == [.uri("spiffe://example.org")])
        #expect(certificate.subject.attributes.first == .init("O", "Sigil"))
        #expect(certificate.serial.bitLength >= 64)
    }

    @Test("an intermediate is signed by its parent with pathLen 0 for the configured lifetime")
    func intermediate() throws {
        let root = try AuthorityFactory.makeRoot(Self.configuration, state: .active, at: Self.now)
        let (record, key) = try AuthorityFactory.makeIntermediate(
            Self.configuration, parent: root.record, parentKey: root.key, state: .active, at: Self.now)
        let certificate = record.certificate
        #expect(record.role == .intermediate)
        #expect(record.parentID == root.record.id)
        #expect(record.id.hasPrefix("intermediate-"))
        #expect(certificate.isSigned(by: root.record.certificate))
        #expect(certificate.publicKey == (try key.publicKey()))
        #expect(certificate.authorityKeyIdentifier == root.record.certificate.subjectKeyIdentifier)
        #expect(
            certificate.basicConstraints == Flagged(value: BasicConstraints(isCA: true, pathLength: 0), critical: true))
        #expect(certificate.notBefore == root.record.notBefore)
        #expect(certificate.notAfter == Self.now.truncatedToSecond + .seconds(48 * 3600))
        #expect(certificate.subject != root.record.certificate.subject)
    }

    @Test("an intermediate never outlives its parent")
    func intermediateCappedAtParent() throws {
        let root = try AuthorityFactory.makeRoot(Self.configuration, state: .active, at: Self.now)
        let late = root.record.notAfter - .seconds(3600)
        let (record, _) = try AuthorityFactory.makeIntermediate(
            Self.configuration, parent: root.record, parentKey: root.key, state: .active, at: late)
        #expect(record.notAfter == root.record.notAfter)
        #expect(record.notBefore == late.truncatedToSecond - .seconds(30))
    }

    @Test("an expired parent cannot sign an intermediate")
    func expiredParent() throws {
        let root = try AuthorityFactory.makeRoot(Self.configuration, state: .active, at: Self.now)
        expectCAError(.noActiveAuthority) {
            try AuthorityFactory.makeIntermediate(
                Self.configuration, parent: root.record, parentKey: root.key, state: .active, at: root.record.notAfter)
        }
    }

    @Test("every generatable key type makes a valid chain", arguments: [KeyAlgorithm.p384, .rsa(bits: 2048), .ed25519])
    func keyTypes(_ algorithm: KeyAlgorithm) throws {
        let pki = try TestPKI(keyAlgorithm: algorithm)
        #expect(pki.root.certificate.publicKey.algorithm == algorithm)
        #expect(pki.intermediate.certificate.publicKey.algorithm == algorithm)
        let leaf = try pki.issueLeaf()
        let result = try ChainVerifier.verify(
            leaf.certificate, intermediates: leaf.issued.chain, roots: [pki.root.certificate], at: pki.createdAt)
        #expect(result == .valid)
    }

    @Test("two generations of a role never share a subject")
    func distinctSubjects() throws {
        let first = try AuthorityFactory.makeRoot(Self.configuration, state: .active, at: Self.now)
        let second = try AuthorityFactory.makeRoot(Self.configuration, state: .prepared, at: Self.now)
        #expect(first.record.certificate.subject != second.record.certificate.subject)
        #expect(first.record.id != second.record.id)
    }
}

@Suite("AuthoritySet")
struct AuthoritySetTests {
    static let now = TestPKI.referenceDate

    @Test("finds the active and prepared authority of each role")
    func activeAndPrepared() throws {
        let pki = try TestPKI()
        let next = try AuthorityFactory.makeIntermediate(
            pki.configuration, parent: pki.root, parentKey: pki.rootKey, state: .prepared, at: Self.now + .seconds(60))
        let set = AuthoritySet([next.record, pki.intermediate, pki.root])
        #expect(set.records.map(\.id) == [pki.root.id, pki.intermediate.id, next.record.id])
        #expect(set.active(.root) == pki.root)
        #expect(set.active(.intermediate) == pki.intermediate)
        #expect(set.prepared(.intermediate) == next.record)
        #expect(set.prepared(.root) == nil)
        #expect(set.record(id: next.record.id) == next.record)
        #expect(set.record(id: "nope") == nil)
    }

    @Test("the bundle holds prepared, active, retired and tainted roots, not revoked or expired ones")
    func bundleRoots() throws {
        let pki = try TestPKI()
        var roots: [AuthorityState: AuthorityRecord] = [:]
        for state in AuthorityState.allCases {
            var record = try AuthorityFactory.makeRoot(pki.configuration, state: state, at: Self.now).record
            record.state = state
            roots[state] = record
        }
        let set = AuthoritySet(Array(roots.values) + [pki.intermediate])
        let inBundle = Set(set.bundleRoots(at: Self.now).map(\.state))
        #expect(inBundle == [.prepared, .active, .retired, .tainted])
        let afterExpiry = pki.root.notAfter
        #expect(set.bundleRoots(at: afterExpiry).isEmpty)
    }

    @Test("the chain from an intermediate is the intermediate alone, root excluded")
    func chain() throws {
        let pki = try TestPKI()
        #expect(pki.authorities.chain(from: pki.intermediate) == [pki.intermediate.certificate])
        #expect(pki.authorities.chain(from: pki.root) == [])
    }
}
