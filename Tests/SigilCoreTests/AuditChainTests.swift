import Foundation
@testable import SigilCore
import SigilTestSupport
import Testing

@Suite("Audit chain")
struct AuditChainTests {
    static let start = TestPKI.referenceDate
    /// A fixed chain key (from 32 bytes of 0x07), so golden links stay put.
    static let key = AuditChainKey(auditKey: Array(repeating: 7, count: 32))

    static func link(_ event: AuditEvent, sequence: Int64, previousHash: String) -> String {
        key.link(AuditRecord.canonicalEncoding(event, sequence: sequence, previousHash: previousHash))
    }

    static func event(_ index: Int, action: AuditAction = .issue) -> AuditEvent {
        AuditEvent(
            time: start + .seconds(Int64(index)), actor: "spiffe://example.org/ns/default/sa/web", action: action,
            subject: "spiffe://example.org/ns/default/sa/web", serial: String(format: "%032x", index),
            requestID: "req-\(index)")
    }

    /// A chain of `count` records, linked from the genesis hash.
    static func chain(_ count: Int) -> [AuditRecord] {
        var records: [AuditRecord] = []
        for index in 1...count {
            records.append(
                AuditRecord.chained(
                    event(index), sequence: Int64(index), previousHash: records.last?.hash ?? AuditRecord.genesisHash,
                    key: key))
        }
        return records
    }

    static func verify(_ records: [AuditRecord]) -> AuditVerification {
        var verifier = AuditChainVerifier(key: key)
        for record in records {
            if let problem = verifier.check(record) { return problem }
        }
        return verifier.result
    }

    @Test("a chained record links to its predecessor and hashes its content")
    func chaining() {
        let records = Self.chain(3)
        #expect(records[0].previousHash == AuditRecord.genesisHash)
        #expect(records[1].previousHash == records[0].hash)
        #expect(records[2].previousHash == records[1].hash)
        #expect(Set(records.map(\.hash)).count == 3)
        #expect(records.allSatisfy { $0.hash.count == 64 && $0.hash.allSatisfy(\.isHexDigit) })
        #expect(
            records[1].hash == Self.link(records[1].event, sequence: 2, previousHash: records[0].hash))
    }

    @Test("the hash covers every field, the sequence and the link")
    func hashCoversEverything() {
        let base = Self.event(1)
        let hash = Self.link(base, sequence: 1, previousHash: AuditRecord.genesisHash)
        var variants: [AuditEvent] = []
        for change in [
            { (event: inout AuditEvent) in event.time = event.time + .seconds(1) },
            { $0.time = $0.time + .milliseconds(1) }, { $0.actor = "admin:0" }, { $0.action = .deny },
            { $0.outcome = .failure }, { $0.code = "policy_denied" }, { $0.reason = "why" }, { $0.subject = nil },
            { $0.serial = "00" }, { $0.authorityID = "intermediate-1" }, { $0.publicKeySHA256 = "ab" },
            { $0.requestID = nil }, { $0.clientAddress = "192.0.2.1" }, { $0.tokenHMAC = "cd" },
        ] as [(inout AuditEvent) -> Void] {
            var event = base
            change(&event)
            variants.append(event)
        }
        for variant in variants {
            #expect(
                Self.link(variant, sequence: 1, previousHash: AuditRecord.genesisHash) != hash,
                "\(variant)")
        }
        #expect(Self.link(base, sequence: 2, previousHash: AuditRecord.genesisHash) != hash)
        #expect(Self.link(base, sequence: 1, previousHash: String(repeating: "1", count: 64)) != hash)
        // Below the chain's microsecond resolution, the time does not change the hash.
        var sameMicrosecond = base
        sameMicrosecond.time = base.time + .nanoseconds(100)
        #expect(Self.link(sameMicrosecond, sequence: 1, previousHash: AuditRecord.genesisHash) == hash)
    }

    @Test("an intact chain verifies, an empty one too")
    func intactChain() {
        let records = Self.chain(5)
        #expect(Self.verify(records) == .valid(records: 5, lastHash: records[4].hash))
        #expect(Self.verify([]) == .valid(records: 0, lastHash: AuditRecord.genesisHash))
    }

    @Test("an edited record is named")
    func editedRecord() {
        var records = Self.chain(5)
        var event = records[2].event
        event.subject = "spiffe://example.org/ns/default/sa/admin"
        records[2] = AuditRecord(
            sequence: 3, event: event, previousHash: records[2].previousHash, hash: records[2].hash)
        guard case .broken(let sequence, let reason) = Self.verify(records) else {
            Issue.record("an edited record must break the chain")
            return
        }
        #expect(sequence == 3)
        #expect(reason.contains("edited"))
    }

    @Test("an edited record with a recomputed hash breaks the next link")
    func editedAndRehashed() {
        var records = Self.chain(5)
        var event = records[2].event
        event.outcome = .failure
        records[2] = AuditRecord.chained(event, sequence: 3, previousHash: records[2].previousHash, key: Self.key)
        guard case .broken(let sequence, let reason) = Self.verify(records) else {
            Issue.record("the record after a rehashed edit must break the chain")
            return
        }
        #expect(sequence == 4)
        #expect(reason.contains("previous link"))
    }

    @Test(
        "deleted, repeated and reordered records are named",
        arguments: ["delete", "delete last-but-one", "repeat", "swap"])
    func structuralDamage(_ damage: String) {
        var records = Self.chain(5)
        let expected: Int64
        switch damage {
        case "delete":
            records.remove(at: 1)
            expected = 3
        case "delete last-but-one":
            records.remove(at: 3)
            expected = 5
        case "repeat":
            records.insert(records[1], at: 2)
            expected = 2
        default:
            records.swapAt(1, 2)
            expected = 3
        }
        guard case .broken(let sequence, _) = Self.verify(records) else {
            Issue.record("\(damage) must break the chain")
            return
        }
        #expect(sequence == expected)
    }

    @Test("a chain that does not start at the genesis hash is broken")
    func missingGenesis() {
        let records = Array(Self.chain(3).dropFirst())
        guard case .broken(let sequence, _) = Self.verify(records) else {
            Issue.record("a chain missing its first record must be broken")
            return
        }
        #expect(sequence == 2)
    }

    @Test("a denial event carries the requester, the code and the reason")
    func requesterDenial() {
        let requester = Requester(
            actor: "spiffe://example.org/ns/default/sa/web", requestID: "r1", clientAddress: "192.0.2.1",
            tokenHMAC: "ff")
        let event = requester.denial(
            CAError(.identityMismatch, reason: "URI SAN differs"), subject: "spiffe://example.org/x", at: Self.start)
        #expect(event.action == .deny)
        #expect(event.outcome == .failure)
        #expect(event.code == "identity_mismatch")
        #expect(event.reason == "URI SAN differs")
        #expect(event.subject == "spiffe://example.org/x")
        #expect(event.actor == requester.actor && event.requestID == "r1" && event.clientAddress == "192.0.2.1")
        #expect(event.tokenHMAC == "ff")
        #expect(event.time == Self.start)
    }

    @Test("records render as one JSON line with RFC 3339 microsecond times")
    func jsonLine() throws {
        let record = Self.chain(1)[0]
        let line = record.jsonLine
        #expect(!line.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["seq"] as? Int == 1)
        #expect(object["time"] as? String == "2026-01-01T00:00:01.000000Z")
        #expect(object["hash"] as? String == record.hash)
        #expect(object["prev_hash"] as? String == AuditRecord.genesisHash)
        #expect(object["code"] == nil, "absent fields are omitted")
        #expect(AuditRecord.timestamp(Self.start + .milliseconds(1500)) == "2026-01-01T00:00:01.500000Z")
    }

    @Test("reasons with quotes, backslashes, newlines and control characters survive as valid JSON, escaped once")
    func hostileTextStaysValidJSON() throws {
        let reason = "say \"hi\"\\ \n\t\u{01} ünïcødé 🔐 </script>"
        let event = AuditEvent(time: Self.start, actor: "admin:uid=0", action: .adminRotate, reason: reason)
        let record = AuditRecord.chained(event, sequence: 1, previousHash: AuditRecord.genesisHash, key: Self.key)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(record.jsonLine.utf8)) as? [String: Any])
        // Stored with its control characters escaped: no stored reason can forge a line where it is printed.
        #expect(object["reason"] as? String == #"say "hi"\\ \u{a}\u{9}\u{1} ünïcødé 🔐 </script>"#)
        let canonical = AuditRecord.canonicalEncoding(event, sequence: 1, previousHash: AuditRecord.genesisHash)
        let parsed = try #require(try JSONSerialization.jsonObject(with: Data(canonical)) as? [String: Any])
        #expect(parsed["reason"] as? String == reason)
        #expect(parsed["code"] is NSNull, "the canonical form writes absent fields as null")
        // The exact bytes are part of the chain's format: records written by one version are verified by the next.
        let expected = #""reason":"say \"hi\"\\ \u000a\u0009\u0001 ünïcødé 🔐 </script>","#
        #expect(String(decoding: canonical, as: UTF8.self).contains(expected))
        // A different reason must give a different hash.
        var edited = record.event
        edited.reason = reason + " "
        #expect(Self.link(edited, sequence: 1, previousHash: AuditRecord.genesisHash) != record.hash)
    }

    @Test("a fixed record under a fixed key has a fixed link (the chain format cannot change unnoticed)")
    func goldenLink() {
        let event = AuditEvent(
            time: Date(microsecondsSince1970: 1_790_000_000_123_456), actor: "spiffe://example.org/ns/default/sa/web",
            action: .issue,
            subject: "spiffe://example.org/ns/default/sa/web", serial: "0123456789abcdef",
            authorityID: "intermediate-0123456789abcdef",
            publicKeySHA256: String(repeating: "a", count: 64), requestID: "req-1", clientAddress: "192.0.2.1",
            tokenHMAC: String(repeating: "b", count: 64))
        let canonical = String(
            decoding: AuditRecord.canonicalEncoding(event, sequence: 7, previousHash: AuditRecord.genesisHash),
            as: UTF8.self)
        #expect(
            canonical
                == #"{"action":"issue","actor":"spiffe://example.org/ns/default/sa/web","authority":"intermediate-0123456789abcdef","client":"192.0.2.1","code":null,"key_sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","outcome":"success","prev":"0000000000000000000000000000000000000000000000000000000000000000","reason":null,"request_id":"req-1","seq":7,"serial":"0123456789abcdef","subject":"spiffe://example.org/ns/default/sa/web","time_us":1790000000123456,"token_hmac":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}"#
        )
        // HMAC-SHA-256 of the line above under HMAC-SHA-256(0x07 × 32, "sigil audit chain v1"), computed with
        // Python's hmac module (Tests/SigilCoreTests/Fixtures/README.md has the command).
        #expect(
            AuditRecord.chained(event, sequence: 7, previousHash: AuditRecord.genesisHash, key: Self.key).hash
                == "a898b49f5a43fdc88d8aaff483672211f020ce9cab2f4c43140cf4ec973f8641")
    }

    @Test("links recomputed without the key, as a database writer could, do not verify")
    func rewrittenWithoutTheKey() {
        var records = Self.chain(4)
        // The writer edits record 2 and recomputes every later link, as it could with plain SHA-256 links.
        var previous = records[0].hash
        for index in 1..<records.count {
            var event = records[index].event
            if index == 1 { event.subject = "spiffe://example.org/ns/default/sa/admin" }
            let hash = AuditRecord.legacyHash(event, sequence: records[index].sequence, previousHash: previous)
            records[index] = AuditRecord(
                sequence: records[index].sequence, event: event, previousHash: previous, hash: hash)
            previous = hash
        }
        guard case .broken(let sequence, _) = Self.verify(records) else {
            Issue.record("links without the key must not verify")
            return
        }
        #expect(sequence == 2)
        // Under another key, too.
        var other = AuditChainVerifier(key: AuditChainKey(auditKey: Array(repeating: 8, count: 32)))
        #expect(other.check(Self.chain(1)[0]) != nil)
    }

    @Test("the legacy verifier reads SHA-256 chains, which the re-link migration checks before replacing them")
    func legacyChain() {
        var previous = AuditRecord.genesisHash
        var verifier = AuditChainVerifier.legacy()
        for index in 1...3 {
            let event = Self.event(index)
            let record = AuditRecord(
                sequence: Int64(index), event: event, previousHash: previous,
                hash: AuditRecord.legacyHash(event, sequence: Int64(index), previousHash: previous))
            #expect(verifier.check(record) == nil)
            previous = record.hash
        }
        #expect(verifier.result == .valid(records: 3, lastHash: previous))
    }

    @Test("a record is bounded whatever its fields hold: no control character, at most maxEncodedBytes")
    func boundedRecord() {
        let hostile = String(repeating: "\"\\\n\u{1b}[2J\u{202e}é", count: 20_000)
        let event = AuditEvent(
            time: Self.start, actor: hostile, action: .deny, outcome: .failure, code: hostile, reason: hostile,
            subject: hostile,
            serial: hostile, authorityID: hostile, publicKeySHA256: hostile, requestID: hostile, clientAddress: hostile,
            tokenHMAC: hostile)
        let record = AuditRecord.chained(event, sequence: 1, previousHash: AuditRecord.genesisHash, key: Self.key)
        let canonical = AuditRecord.canonicalEncoding(record.event, sequence: 1, previousHash: AuditRecord.genesisHash)
        #expect(canonical.count <= AuditEvent.maxEncodedBytes, "\(canonical.count) bytes")
        #expect(record.jsonLine.utf8.count <= AuditEvent.maxEncodedBytes)
        #expect(!record.jsonLine.contains("\u{1b}") && !record.jsonLine.contains("\u{202e}"))
        #expect(record.event.reason?.hasSuffix("…") == true)
        #expect(Self.verify([record]) == .valid(records: 1, lastHash: record.hash))
        // Ordinary records are stored exactly as given.
        let plain = Self.event(1)
        #expect(
            AuditRecord.chained(plain, sequence: 1, previousHash: AuditRecord.genesisHash, key: Self.key).event == plain
        )
    }

    @Test("an anchored head is found, or the cut or rewrite is named")
    func anchoredHead() {
        let records = Self.chain(5)
        let head = AuditHead(records[3])
        #expect(head.problem(in: records[3], lastSequence: 5) == nil)
        #expect(head.problem(in: nil, lastSequence: 3)?.contains("removed from its end") == true)
        let rewritten = AuditRecord(
            sequence: 4, event: records[3].event, previousHash: records[3].previousHash, hash: records[2].hash)
        #expect(head.problem(in: rewritten, lastSequence: 5)?.contains("rewritten") == true)
    }
}
