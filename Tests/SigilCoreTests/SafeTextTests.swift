import Foundation
import Logging
import SigilCore
import SigilTestSupport
import Synchronization
import Testing

@Suite("Attacker text in reasons, logs and the audit list")
struct SafeTextTests {
    @Test("control characters, DEL, C1 and bidi overrides are escaped; plain text passes unchanged")
    func escaping() {
        #expect(SafeText.escapingControlCharacters("plain text: ünï 🔐") == "plain text: ünï 🔐")
        #expect(
            SafeText.escapingControlCharacters("a\nb\r\u{1b}[31mc\u{7f}\u{85}\u{202e}d\\")
                == #"a\u{a}b\u{d}\u{1b}[31mc\u{7f}\u{85}\u{202e}d\\"#)
        #expect(
            SafeText.isPlain("plain") && !SafeText.isPlain("a\nb") && !SafeText.isPlain("\u{2066}x")
                && !SafeText.isPlain("a\\b"))
    }

    @Test(
        "an excerpt is at most 128 bytes of escaped text, a cut marked with …",
        arguments: [0, 10, 127, 128, 129, 10_000])
    func excerpt(_ length: Int) {
        let text = String(repeating: "\n", count: length)
        let result = SafeText.excerpt(text)
        #expect(result.utf8.count <= SafeText.excerptLimit)
        #expect(!result.contains("\n"))
        #expect(result.hasSuffix("…") == (length * 5 > SafeText.excerptLimit))
    }

    @Test("a log line stays one line whatever its message and metadata hold")
    func logLine() {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "sigil") { label in
            LineLogHandler(label: label, clock: ManualClock(now: TestPKI.referenceDate)) { line in
                lines.withLock { $0.append(line) }
            }
        }
        logger.logLevel = .info
        logger.info(
            "refused\nFAKE 2026-01-01 notice sigil: forged", metadata: ["sigil.reason": "alg \u{1b}]0;pwned\u{07}\nx"])
        let written = lines.withLock { $0 }
        #expect(written.count == 1)
        #expect(written[0].filter { $0 == "\n" }.count == 1 && written[0].hasSuffix("\n"))
        #expect(!written[0].contains("\u{1b}") && written[0].contains(#"\u{a}FAKE"#))
    }
}

@Suite("Denial budget")
struct DenialBudgetTests {
    @Test("denials beyond the budget are counted by code and summarised once; the budget refills with time")
    func budget() {
        let clock = ManualClock(now: TestPKI.referenceDate)
        let budget = DenialBudget(perSecond: 3, clock: clock)
        #expect((0..<3).allSatisfy { _ in budget.admit("token_invalid") })
        #expect(!budget.admit("token_invalid") && !budget.admit("token_invalid") && !budget.admit("unauthenticated"))
        #expect(budget.pending == 3)
        let summary = budget.takeSummary()
        #expect(
            summary?.counts == ["token_invalid": 2, "unauthenticated": 1] && summary?.since == TestPKI.referenceDate)
        #expect(summary?.reason.contains("token_invalid=2 unauthenticated=1") == true)
        #expect(budget.takeSummary() == nil, "a summary is handed out once")
        clock.advance(by: .seconds(1))
        #expect((0..<3).allSatisfy { _ in budget.admit("token_invalid") })
        #expect(DenialBudget(perSecond: 0, clock: clock).admit("x"), "0: every denial is audited")
    }
}

@Suite("Network addresses")
struct NetworkAddressTests {
    @Test("IPv6 clients share a bucket per /64, IPv4 clients have one each, mapped addresses count as IPv4")
    func rateLimitKeys() {
        #expect(
            NetworkAddress.rateLimitKey("2001:db8:1:2:aaaa::1")
                == NetworkAddress.rateLimitKey("2001:db8:1:2:ffff:1:2:3"))
        #expect(NetworkAddress.rateLimitKey("2001:db8:1:2::1") == "client 2001:db8:1:2::/64")
        #expect(NetworkAddress.rateLimitKey("2001:db8:1:3::1") != NetworkAddress.rateLimitKey("2001:db8:1:2::1"))
        #expect(NetworkAddress.rateLimitKey("192.0.2.1") != NetworkAddress.rateLimitKey("192.0.2.2"))
        #expect(NetworkAddress.rateLimitKey("::ffff:192.0.2.1") == NetworkAddress.rateLimitKey("192.0.2.1"))
        #expect(NetworkAddress.rateLimitKey(nil) == "client unknown")
    }

    @Test(
        "loopback names and addresses",
        arguments: [
            ("127.0.0.1", true), ("127.1.2.3", true), ("::1", true), ("[::1]", true), ("localhost", true),
            ("0.0.0.0", false), ("::", false), ("10.0.0.1", false), ("db.example.org", false), ("127.0.0.256", false),
        ])
    func loopback(_ host: String, _ expected: Bool) {
        #expect(NetworkAddress.isLoopback(host) == expected)
    }
}
