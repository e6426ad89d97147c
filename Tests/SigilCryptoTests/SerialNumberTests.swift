import Foundation
import SigilCrypto
import Testing

@Suite("SerialNumber")
struct SerialNumberTests {
    @Test("random serials are positive, 64 to 128 bits long and distinct")
    func randomSerials() throws {
        let serials = try (0..<256).map { _ in try SerialNumber.random() }
        for serial in serials {
            #expect(serial.bytes != [0])
            #expect(serial.bytes.count <= 16)
            // 128 random bits: a serial shorter than 64 bits has probability 2^-64.
            #expect((64...128).contains(serial.bitLength))
        }
        #expect(Set(serials).count == serials.count)
        // Each serial has 128 random bits, so its bit length is ≥ 120 unless its first byte is zero (p = 1/256
        // each). The longest of 256 serials falls short only with probability 2^-2048.
        #expect(serials.map(\.bitLength).max() ?? 0 >= 120)
        #expect(serials.filter { $0.bitLength >= 120 }.count > 200)
    }

    @Test("time-ordered serials start with the time, end with 64 random bits and sort as numbers and as hex")
    func timeOrderedSerials() throws {
        let start = Date(timeIntervalSince1970: 1_795_000_000.25)  // 1,795,000,000,250,000 µs, exact in binary
        let serial = try SerialNumber.timeOrdered(at: start)
        #expect(serial.bytes.count == 15)  // 8 octets of time, the first of them zero and dropped, + 8 random
        #expect(
            Array(serial.bytes.prefix(7))
                == Array(withUnsafeBytes(of: UInt64(1_795_000_000_250_000).bigEndian, Array.init).dropFirst()))
        #expect((64...128).contains(serial.bitLength))

        let later = try (0..<64).map { step in
            try SerialNumber.timeOrdered(at: start.addingTimeInterval(Double(step) / 1000))
        }
        #expect(later == later.sorted())
        #expect(later.map(\.hex) == later.map(\.hex).sorted())
        // The same instant: the time octets agree, the random ones differ.
        let twins = try (0..<16).map { _ in try SerialNumber.timeOrdered(at: start) }
        #expect(Set(twins.map { Array($0.bytes.prefix(7)) }).count == 1)
        #expect(Set(twins.map { Array($0.bytes.suffix(8)) }).count == 16)
    }

    @Test(
        "hex round trips", arguments: [[0x01], [0x7f, 0xff], [0x80, 0x00, 0x01], Array(repeating: 0xab, count: 20)])
    func hexRoundTrip(_ bytes: [UInt8]) throws {
        let serial = SerialNumber(bytes: bytes)
        #expect(SerialNumber(hex: serial.hex) == serial)
        #expect(serial.description == serial.hex)
        #expect(serial.hex == serial.hex.lowercased())
    }

    @Test("a random serial round trips through hex")
    func randomHexRoundTrip() throws {
        let serial = try SerialNumber.random()
        #expect(SerialNumber(hex: serial.hex) == serial)
        #expect(SerialNumber(hex: serial.hex.uppercased()) == serial)
    }

    @Test(
        "hex accepts colons, either case and odd length",
        arguments: [("0a:BC:de", [0x0a, 0xbc, 0xde]), ("abc", [0x0a, 0xbc]), ("00ff", [0xff]), ("0", [0x00])])
    func lenientHex(_ text: String, _ bytes: [UInt8]) {
        #expect(SerialNumber(hex: text)?.bytes == bytes)
    }

    @Test(
        "hex rejects empty, non-hex and over-long input",
        arguments: ["", ":", "xyz", "12 34", "0x12", String(repeating: "a", count: 41)])
    func invalidHex(_ text: String) {
        #expect(SerialNumber(hex: text) == nil)
    }

    @Test("leading zero bytes are dropped and zero stays one byte")
    func normalisation() {
        #expect(SerialNumber(bytes: [0, 0, 1, 2]).bytes == [1, 2])
        #expect(SerialNumber(bytes: [0, 0]).bytes == [0])
        #expect(SerialNumber(bytes: []).bytes == [0])
        #expect(SerialNumber(bytes: [0, 0, 1, 2]) == SerialNumber(bytes: [1, 2]))
    }

    @Test(
        "bit length counts the magnitude",
        arguments: [([0x00], 0), ([0x01], 1), ([0x80], 8), ([0x01, 0x00], 9), ([0xff, 0xff], 16)])
    func bitLength(_ bytes: [UInt8], _ bits: Int) {
        #expect(SerialNumber(bytes: bytes).bitLength == bits)
    }

    @Test("serials order by numeric value")
    func ordering() {
        #expect(SerialNumber(bytes: [0xff]) < SerialNumber(bytes: [0x01, 0x00]))
        #expect(SerialNumber(bytes: [0x01, 0x00]) < SerialNumber(bytes: [0x01, 0x01]))
        #expect(!(SerialNumber(bytes: [0x02]) < SerialNumber(bytes: [0x02])))
    }
}
