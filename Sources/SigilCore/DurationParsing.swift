import Foundation

/// Human spellings of durations for flags and configuration: `90s`, `10m`, `1h`, `48h`, `365d`, `1h30m`,
/// or a bare number of seconds.
extension Duration {
    public init?(parsing text: String) {
        let text = text.trimmingCharacters(in: .whitespaces).lowercased()
        if let seconds = Int64(text), seconds >= 0 {
            self = .seconds(seconds)
            return
        }
        var total: Int64 = 0
        var number = ""
        for character in text {
            if character.isASCII, character.isNumber {
                number.append(character)
                continue
            }
            guard let value = Int64(number) else { return nil }
            let unit: Int64
            switch character {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86_400
            default: return nil
            }
            let (product, overflow) = value.multipliedReportingOverflow(by: unit)
            let (sum, sumOverflow) = total.addingReportingOverflow(product)
            guard !overflow, !sumOverflow else { return nil }
            total = sum
            number = ""
        }
        guard number.isEmpty, !text.isEmpty else { return nil }
        self = .seconds(total)
    }

    /// The shortest spelling `init(parsing:)` reads back (`1h30m`, `45s`).
    public var humanReadable: String {
        var seconds = wholeSeconds
        if seconds == 0 { return "0s" }
        var parts: [String] = []
        for (unit, suffix) in [(Int64(86_400), "d"), (3600, "h"), (60, "m"), (1, "s")] where seconds >= unit {
            parts.append("\(seconds / unit)\(suffix)")
            seconds %= unit
        }
        return parts.joined()
    }
}
