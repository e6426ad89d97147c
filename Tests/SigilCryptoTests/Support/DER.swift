/// Just enough DER reading (X.690 §8.1) for tests to look inside encodings the API does not expose,
/// e.g. the sign of a serial's INTEGER or the position of a signature.
struct DERElement {
    let tag: UInt8
    /// Offsets of the whole element and of its contents within the buffer it was read from.
    let range: Range<Int>
    let contents: Range<Int>

    struct Malformed: Error {}

    /// Reads the element starting at `offset` of `bytes`.
    init(_ bytes: [UInt8], at offset: Int = 0) throws {
        guard offset + 2 <= bytes.count else { throw Malformed() }
        tag = bytes[offset]
        var cursor = offset + 1
        var length = Int(bytes[cursor])
        cursor += 1
        if length & 0x80 != 0 {
            let octets = length & 0x7f
            guard octets > 0, octets <= 4, cursor + octets <= bytes.count else { throw Malformed() }
            length = bytes[cursor..<(cursor + octets)].reduce(0) { $0 << 8 | Int($1) }
            cursor += octets
        }
        guard cursor + length <= bytes.count else { throw Malformed() }
        range = offset..<(cursor + length)
        contents = cursor..<(cursor + length)
    }

    /// The elements inside a constructed element (SEQUENCE, SET, context tags).
    func children(in bytes: [UInt8]) throws -> [DERElement] {
        var result: [DERElement] = []
        var offset = contents.lowerBound
        while offset < contents.upperBound {
            let child = try DERElement(bytes, at: offset)
            result.append(child)
            offset = child.range.upperBound
        }
        return result
    }
}

/// The content octets of a certificate's serialNumber INTEGER (RFC 5280 §4.1: TBSCertificate's second field
/// after the explicit [0] version).
func serialContentOctets(ofCertificate der: [UInt8]) throws -> [UInt8] {
    let certificate = try DERElement(der)
    guard let tbs = try certificate.children(in: der).first else { throw DERElement.Malformed() }
    let fields = try tbs.children(in: der)
    guard let serial = fields.first(where: { $0.tag == 0x02 }) else { throw DERElement.Malformed() }
    return Array(der[serial.contents])
}
