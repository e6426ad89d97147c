import Foundation
import Logging
import Synchronization

/// One line per event on standard error, in swift-log's `StreamLogHandler` format
/// (`2026-11-26T01:53:04+0000 info sigil: key=value [Source] message`), with the timestamp text made once per
/// second instead of once per line: `localtime` and `strftime` were ~2 % of an issuance's CPU in the bench.
public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadataProvider: Logger.MetadataProvider?
    public var metadata = Logger.Metadata() {
        didSet { prettyMetadata = Self.prettify(metadata) }
    }

    private let label: String
    private let timestamps: SecondTimestamps
    private let output: @Sendable (String) -> Void
    private var prettyMetadata: String?

    /// A handler for `label` writing to standard error; all handlers made by one `factory` share the clock's
    /// cached timestamp.
    public static func factory(
        level: Logger.Level, clock: any WallClock = SystemClock()
    ) -> @Sendable (String) -> any LogHandler {
        let timestamps = SecondTimestamps(clock: clock)
        return { label in
            var handler = LineLogHandler(label: label, timestamps: timestamps, output: writeToStandardError)
            handler.logLevel = level
            return handler
        }
    }

    /// A handler writing each line to `output` (tests).
    public init(label: String, clock: any WallClock, output: @escaping @Sendable (String) -> Void) {
        self.init(label: label, timestamps: SecondTimestamps(clock: clock), output: output)
    }

    private init(label: String, timestamps: SecondTimestamps, output: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.timestamps = timestamps
        self.output = output
        self.metadataProvider = LoggingSystem.metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let provided = metadataProvider?.get() ?? [:]
        var pretty = prettyMetadata
        if !provided.isEmpty || !(event.metadata ?? [:]).isEmpty || event.error != nil {
            var merged = metadata
            merged.merge(provided) { _, new in new }
            merged.merge(event.metadata ?? [:]) { _, new in new }
            if let error = event.error {
                merged["error.message"] = "\(error)"
                merged["error.type"] = "\(String(reflecting: type(of: error)))"
            }
            pretty = Self.prettify(merged)
        }
        var line = timestamps.current()
        line += " \(event.level)"
        if !label.isEmpty { line += " " + label }
        line += ":"
        if let pretty { line += " " + pretty }
        line += " [\(event.source)] \(Self.escaped(event.message.description))\n"
        output(line)
    }

    private static func prettify(_ metadata: Logger.Metadata) -> String? {
        metadata.isEmpty
            ? nil
            : metadata.sorted { $0.key < $1.key }.map { "\(escaped($0.key))=\(escaped("\($0.value)"))" }.joined(
                separator: " ")
    }

    /// One line whatever a value holds: a newline or terminal escape in a logged value (a reason quoting
    /// a client's header, say) must not forge a line or reach the operator's terminal.
    static func escaped(_ text: String) -> String {
        SafeText.isPlain(text) ? text : SafeText.escapingControlCharacters(text)
    }

    /// One `write(2)` per line (stderr is unbuffered), so concurrent lines do not interleave.
    private static let writeToStandardError: @Sendable (String) -> Void = { line in
        var line = line
        line.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = write(STDERR_FILENO, bytes.baseAddress! + offset, bytes.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }
}

/// `%Y-%m-%dT%H:%M:%S%z` in local time for the clock's current second, formatted again only when the second
/// changes.
final class SecondTimestamps: Sendable {
    private let clock: any WallClock
    private let cached = Mutex<(second: Int64, text: String)>((Int64.min, ""))

    init(clock: any WallClock) { self.clock = clock }

    func current() -> String {
        let second = Int64(clock.now.timeIntervalSince1970.rounded(.down))
        if let text = cached.withLock({ $0.second == second ? $0.text : nil }) { return text }
        let text = Self.format(second)
        cached.withLock { $0 = (second, text) }
        return text
    }

    static func format(_ second: Int64) -> String {
        var time = time_t(second)
        var parts = tm()
        guard localtime_r(&time, &parts) != nil else { return "<unknown>" }
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
