import Foundation

/// keyUsage bits (RFC 5280 §4.2.1.3).
public struct KeyUsage: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let digitalSignature = KeyUsage(rawValue: 1 << 0)
    public static let nonRepudiation = KeyUsage(rawValue: 1 << 1)
    public static let keyEncipherment = KeyUsage(rawValue: 1 << 2)
    public static let dataEncipherment = KeyUsage(rawValue: 1 << 3)
    public static let keyAgreement = KeyUsage(rawValue: 1 << 4)
    public static let keyCertSign = KeyUsage(rawValue: 1 << 5)
    public static let cRLSign = KeyUsage(rawValue: 1 << 6)
    public static let encipherOnly = KeyUsage(rawValue: 1 << 7)
    public static let decipherOnly = KeyUsage(rawValue: 1 << 8)

    static let names: [(KeyUsage, String)] = [
        (.digitalSignature, "digitalSignature"), (.nonRepudiation, "nonRepudiation"),
        (.keyEncipherment, "keyEncipherment"), (.dataEncipherment, "dataEncipherment"),
        (.keyAgreement, "keyAgreement"), (.keyCertSign, "keyCertSign"), (.cRLSign, "cRLSign"),
        (.encipherOnly, "encipherOnly"), (.decipherOnly, "decipherOnly"),
    ]

    /// The DER BIT STRING bit numbers of the set bits.
    var bitNumbers: [Int32] { (0..<9).filter { rawValue & (1 << $0) != 0 }.map { Int32($0) } }

    public var names: [String] { Self.names.filter { contains($0.0) }.map(\.1) }
    public var description: String { names.joined(separator: ", ") }
}

/// extendedKeyUsage purposes (RFC 5280 §4.2.1.12).
public enum ExtendedKeyUsage: Hashable, Sendable, CustomStringConvertible {
    case serverAuth
    case clientAuth
    /// Any other purpose, by dotted OID.
    case other(String)

    public var description: String {
        switch self {
        case .serverAuth: return "serverAuth"
        case .clientAuth: return "clientAuth"
        case .other(let oid): return oid
        }
    }
}

/// basicConstraints (RFC 5280 §4.2.1.9).
public struct BasicConstraints: Hashable, Sendable {
    public let isCA: Bool
    /// pathLenConstraint; only meaningful when `isCA`.
    public let pathLength: Int?

    public init(isCA: Bool, pathLength: Int? = nil) {
        self.isCA = isCA
        self.pathLength = pathLength
    }

    public static let endEntity = BasicConstraints(isCA: false)
}

/// An extension value together with its criticality flag.
public struct Flagged<Value: Hashable & Sendable>: Hashable, Sendable {
    public let value: Value
    public let critical: Bool
    public init(value: Value, critical: Bool) {
        self.value = value
        self.critical = critical
    }
}

/// A certificate serial number (RFC 5280 §4.1.2.2): positive, at most 20 octets.
public struct SerialNumber: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// Big-endian magnitude without leading zero bytes.
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) {
        let trimmed = Array(bytes.drop { $0 == 0 })
        self.bytes = trimmed.isEmpty ? [0] : trimmed
    }

    /// Parses lowercase or uppercase hex, with or without colons.
    public init?(hex: String) {
        let digits = hex.filter { $0 != ":" }
        guard !digits.isEmpty, digits.count <= 40, digits.allSatisfy(\.isHexDigit) else { return nil }
        let padded = digits.count % 2 == 1 ? "0" + digits : digits
        var bytes: [UInt8] = []
        var index = padded.startIndex
        while index < padded.endIndex {
            let next = padded.index(index, offsetBy: 2)
            guard let byte = UInt8(padded[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        self.init(bytes: bytes)
    }

    /// 128 random bits (CA/B Forum asks for ≥ 64; SPIRE and Istio use 128), never zero.
    public static func random() throws -> SerialNumber {
        while true {
            let serial = SerialNumber(bytes: try SecureRandom.bytes(16))
            if serial.bytes != [0] { return serial }
        }
    }

    /// A leaf's serial: the issuance time in microseconds since 1970 (8 octets) followed by 64 random bits,
    /// the CA/Browser Forum's minimum of CSPRNG output. Serials issued later are larger, and their hex is
    /// longer only from the year 4253, so the store's serial indexes grow at their right edge: with random
    /// serials every certificate dirtied a random leaf page of two indexes, which a large inventory paid for
    /// in page writes and cache misses.
    public static func timeOrdered(at date: Date) throws -> SerialNumber {
        let microseconds = UInt64(max(0, (date.timeIntervalSince1970 * 1_000_000).rounded(.down)))
        return SerialNumber(
            bytes: withUnsafeBytes(of: microseconds.bigEndian, Array.init) + (try SecureRandom.bytes(8)))
    }

    /// Lowercase hex without separators.
    public var hex: String { hexString(bytes) }
    public var description: String { hex }
    /// Bit length of the magnitude.
    public var bitLength: Int {
        guard let first = bytes.first, first != 0 else { return 0 }
        return (bytes.count - 1) * 8 + (8 - first.leadingZeroBitCount)
    }

    public static func < (lhs: SerialNumber, rhs: SerialNumber) -> Bool {
        lhs.bytes.count != rhs.bytes.count
            ? lhs.bytes.count < rhs.bytes.count : lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}
