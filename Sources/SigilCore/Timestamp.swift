import Foundation

/// RFC 3339 UTC timestamps (`2026-11-25T14:49:56Z`), written by arithmetic. Foundation's
/// `ISO8601DateFormatter` builds an ICU formatter for every instance: that was a quarter of the server's CPU
/// when each response created three.
public enum Timestamp {
    /// The time of an RFC 3339 timestamp with or without a fraction of a second; nil when `text` is not one.
    public static func parse(_ text: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return date }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)
    }

    /// Whole seconds (`2026-11-25T14:49:56Z`); a fraction of a second is dropped.
    public static func seconds(_ date: Date) -> String {
        format(Int64((date.timeIntervalSince1970).rounded(.down)), fraction: nil)
    }

    /// Microseconds (`2026-11-25T14:49:56.123456Z`); finer fractions are dropped.
    public static func microseconds(_ date: Date) -> String {
        let micros = date.microsecondsSince1970
        let (seconds, remainder) = micros.floorDivided(by: 1_000_000)
        return format(seconds, fraction: Int(remainder))
    }

    private static func format(_ secondsSince1970: Int64, fraction: Int?) -> String {
        let (days, secondOfDay) = secondsSince1970.floorDivided(by: 86_400)
        let (year, month, day) = civilDate(daysSince1970: days)
        var text = ""
        text.reserveCapacity(27)
        append(year, width: 4, to: &text)
        text.append("-")
        append(month, width: 2, to: &text)
        text.append("-")
        append(day, width: 2, to: &text)
        text.append("T")
        append(Int(secondOfDay / 3600), width: 2, to: &text)
        text.append(":")
        append(Int(secondOfDay / 60 % 60), width: 2, to: &text)
        text.append(":")
        append(Int(secondOfDay % 60), width: 2, to: &text)
        if let fraction {
            text.append(".")
            append(fraction, width: 6, to: &text)
        }
        text.append("Z")
        return text
    }

    /// The proleptic Gregorian date of a day count (H. Hinnant, "chrono-compatible low-level date algorithms").
    static func civilDate(daysSince1970: Int64) -> (year: Int, month: Int, day: Int) {
        let shifted = daysSince1970 + 719_468  // days since 0000-03-01
        let (era, dayOfEra) = shifted.floorDivided(by: 146_097)
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153  // March = 0
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month), Int(day))
    }

    private static func append(_ value: Int, width: Int, to text: inout String) {
        let digits = String(value)
        if digits.count < width { text.append(String(repeating: "0", count: width - digits.count)) }
        text.append(digits)
    }
}

extension Int64 {
    /// Quotient rounded towards minus infinity, and a remainder in `0..<divisor`.
    func floorDivided(by divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let remainder = self % divisor
        return remainder < 0 ? (self / divisor - 1, remainder + divisor) : (self / divisor, remainder)
    }
}
