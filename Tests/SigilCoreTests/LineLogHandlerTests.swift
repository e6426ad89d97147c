import Foundation
import Logging
import SigilCore
import SigilTestSupport
import Synchronization
import Testing

@Suite("LineLogHandler")
struct LineLogHandlerTests {
    /// Collects lines written by either handler.
    final class Lines: TextOutputStream, Sendable {
        let lines = Mutex<[String]>([])
        func write(_ string: String) { lines.withLock { $0.append(string) } }
        var all: [String] { lines.withLock { $0 } }
    }

    struct Refused: Error {}

    /// The text after the timestamp (`YYYY-MM-DDTHH:MM:SS±hhmm `).
    static func afterTimestamp(_ line: String) -> Substring {
        line.drop { $0 != " " }.dropFirst()
    }

    @Test("lines match swift-log's StreamLogHandler after the timestamp, with and without metadata and errors")
    func sameFormatAsStreamLogHandler() throws {
        let ours = Lines()
        let theirs = Lines()
        let clock = ManualClock(now: TestPKI.referenceDate)
        var mine = LineLogHandler(label: "sigil", clock: clock, output: { ours.write($0) })
        var stream = StreamLogHandler(label: "sigil", stream: theirs)
        mine.metadataProvider = nil
        stream.metadataProvider = nil
        mine.logLevel = .debug
        stream.logLevel = .debug
        mine[metadataKey: "sigil.replica"] = "a"
        stream[metadataKey: "sigil.replica"] = "a"
        let events = [
            LogEvent(
                level: .info, message: "plain", metadata: nil, source: "SigilServer", file: "f", function: "g", line: 1),
            LogEvent(
                level: .notice, message: "issued", metadata: ["sigil.serial": "01ab", "a.first": "1"],
                source: "SigilCore", file: "f",
                function: "g", line: 2),
            LogEvent(
                level: .error, message: "refused", error: Refused(), metadata: nil, source: "SigilServer", file: "f",
                function: "g", line: 3),
        ]
        for event in events {
            mine.log(event: event)
            stream.log(event: event)
        }
        #expect(ours.all.count == 3)
        #expect(ours.all.map(Self.afterTimestamp) == theirs.all.map(Self.afterTimestamp))
        for line in ours.all + theirs.all {
            let timestamp = String(line.prefix { $0 != " " })
            #expect(timestamp.wholeMatch(of: #/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}/#) != nil, "\(line)")
        }
    }

    @Test("the timestamp is the clock's second, formatted again only when the second changes")
    func timestampFollowsClock() {
        let lines = Lines()
        let clock = ManualClock(now: TestPKI.referenceDate)
        let handler = LineLogHandler(label: "", clock: clock, output: { lines.write($0) })
        let event = LogEvent(level: .info, message: "m", metadata: nil, source: "S", file: "f", function: "g", line: 1)
        handler.log(event: event)
        clock.advance(by: .milliseconds(500))
        handler.log(event: event)
        clock.advance(by: .seconds(3600))
        handler.log(event: event)
        let stamps = lines.all.map { String($0.prefix { $0 != " " }) }
        #expect(stamps[0] == stamps[1])
        #expect(stamps[2] != stamps[1])
        // Foundation's formatter in the same time zone: an independent rendering of the same second.
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = .current
        formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ssZ"
        #expect(stamps[2] == formatter.string(from: clock.now))
        #expect(
            lines.all[0].hasSuffix(" info: [S] m\n"), "an empty label leaves no space before the colon: \(lines.all[0])"
        )
    }
}
