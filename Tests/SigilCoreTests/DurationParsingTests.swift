import SigilCore
import Testing

@Suite("Duration(parsing:)")
struct DurationParsingTests {
    @Test(
        "human spellings",
        arguments: [
            ("90s", 90), ("10m", 600), ("1h", 3600), ("48h", 172_800), ("365d", 31_536_000), ("1h30m", 5400),
            ("1d2h3m4s", 93_784), ("3600", 3600), ("0", 0), ("0s", 0), (" 1h ", 3600), ("1H", 3600), ("10M", 600),
            ("007s", 7), ("30m1h", 5400),
        ] as [(String, Int64)])
    func spellings(_ text: String, _ seconds: Int64) {
        #expect(Duration(parsing: text) == .seconds(seconds))
    }

    @Test(
        "malformed spellings are refused",
        arguments: [
            "", " ", "h", "s1", "1x", "1 h", "1h 30m", "1h30", "-1", "-1h", "+1h", "1.5h", "1e3", "abc", "1w", "1ms",
            "١h",
            "99999999999999999999", "99999999999999999999s", "106751991167301d",
        ])
    func malformed(_ text: String) {
        #expect(Duration(parsing: text) == nil)
    }

    @Test("a sum of units that overflows is refused instead of trapping")
    func overflowingSumIsRefused() async {
        #expect(Duration(parsing: "9223372036854775807s1s") == nil)
        #expect(Duration(parsing: "106751991167300d1d") == nil)
    }

    @Test(
        "humanReadable is the shortest spelling and parses back",
        arguments: [
            (0, "0s"), (45, "45s"), (60, "1m"), (5400, "1h30m"), (86_400, "1d"), (93_784, "1d2h3m4s"),
            (31_536_000, "365d"),
        ]
            as [(Int64, String)])
    func humanReadable(_ seconds: Int64, _ text: String) {
        #expect(Duration.seconds(seconds).humanReadable == text)
        #expect(Duration(parsing: text) == .seconds(seconds))
    }
}
