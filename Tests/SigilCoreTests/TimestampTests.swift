import Foundation
import SigilCore
import SigilTestSupport
import Testing

@Suite("Timestamp")
struct TimestampTests {
    @Test(
        "known instants",
        arguments: [
            (0, "1970-01-01T00:00:00Z"), (951_782_400, "2000-02-29T00:00:00Z"), (4_107_542_400, "2100-03-01T00:00:00Z"),
            (1_795_618_196, "2026-11-25T14:49:56Z"), (253_402_300_799, "9999-12-31T23:59:59Z"),
            (-631_152_000, "1950-01-01T00:00:00Z"), (-1, "1969-12-31T23:59:59Z"),
        ] as [(Int64, String)])
    func knownInstants(_ seconds: Int64, _ text: String) {
        #expect(Timestamp.seconds(Date(timeIntervalSince1970: TimeInterval(seconds))) == text)
        #expect(Timestamp.seconds(Date(timeIntervalSince1970: TimeInterval(seconds) + 0.999)) == text)
    }

    @Test("microseconds are zero-padded, truncated, and negative instants round down")
    func microseconds() {
        #expect(
            Timestamp.microseconds(Date(microsecondsSince1970: 1_795_618_196_000_042)) == "2026-11-25T14:49:56.000042Z")
        #expect(Timestamp.microseconds(Date(timeIntervalSince1970: 1.0000019)) == "1970-01-01T00:00:01.000001Z")
        #expect(Timestamp.microseconds(Date(microsecondsSince1970: -1)) == "1969-12-31T23:59:59.999999Z")
    }

    @Test("agrees with ISO8601DateFormatter from 1950 to 9999")
    func agreesWithFoundation() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        var generator = SeededGenerator(state: 0x5161_1000)
        let range: ClosedRange<Int64> = -631_152_000...253_402_300_799
        for _ in 0..<20_000 {
            let date = Date(timeIntervalSince1970: TimeInterval(Int64.random(in: range, using: &generator)))
            #expect(Timestamp.seconds(date) == formatter.string(from: date))
        }
    }
}
