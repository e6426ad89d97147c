import Foundation

/// The one source of "now" for time-aware code, injected so tests can move time by hand.
public protocol WallClock: Sendable {
    var now: Date { get }
    /// Suspends until `deadline` (or returns at once if it has passed); throws on cancellation.
    func sleep(until deadline: Date) async throws
}

/// The system's real-time clock. The only type in `Sources/` that reads `Date()`.
public struct SystemClock: WallClock {
    public init() {}
    public var now: Date { Date() }
    public func sleep(until deadline: Date) async throws {
        let seconds = deadline.timeIntervalSince(Date())
        if seconds > 0 { try await Task.sleep(for: .milliseconds(Int64((seconds * 1000).rounded(.up)))) }
    }
}

extension Duration {
    /// The duration in (fractional) seconds, for date arithmetic.
    public var timeInterval: TimeInterval {
        let parts = components
        return TimeInterval(parts.seconds) + TimeInterval(parts.attoseconds) / 1e18
    }

    /// Whole seconds, for wire formats that count seconds.
    public var wholeSeconds: Int64 { components.seconds }
}

extension Date {
    /// Truncated to a whole second (X.509 time granularity).
    public var truncatedToSecond: Date { Date(timeIntervalSince1970: timeIntervalSince1970.rounded(.down)) }

    public static func + (date: Date, duration: Duration) -> Date { date.addingTimeInterval(duration.timeInterval) }
    public static func - (date: Date, duration: Duration) -> Date { date.addingTimeInterval(-duration.timeInterval) }
}
