/// Strict DER checks OpenSSL's lenient `d2i_*` decoders do not make (X.690 §10: definite, minimal lengths).
/// OpenSSL accepts BER forms (indefinite lengths, padded lengths) and re-encodes them on output, so a
/// request could be parsed differently by another DER decoder than by Sigil; Sigil refuses those.
enum DERStructure {
    struct Element {
        let tag: UInt8
        let contents: Range<Int>
        var isConstructed: Bool { tag & 0x20 != 0 }
    }

    /// The element starting at `offset`, or nil unless it is well-formed DER within `bytes[..<limit]`.
    static func element(_ bytes: [UInt8], at offset: Int, limit: Int) -> Element? {
        guard offset + 2 <= limit else { return nil }
        let tag = bytes[offset]
        // High tag numbers (0x1F) never occur in the structures Sigil reads.
        guard tag & 0x1F != 0x1F else { return nil }
        var cursor = offset + 1
        let first = bytes[cursor]
        cursor += 1
        var length = 0
        if first < 0x80 {
            length = Int(first)
        } else {
            let count = Int(first & 0x7F)
            // 0x80 is BER's indefinite length; more than 4 length octets is beyond any CSR.
            guard count >= 1, count <= 4, cursor + count <= limit, bytes[cursor] != 0 else { return nil }
            for index in 0..<count { length = length << 8 | Int(bytes[cursor + index]) }
            cursor += count
            guard length >= 0x80 else { return nil }  // the short form was required
        }
        guard length <= limit - cursor else { return nil }
        return Element(tag: tag, contents: cursor..<(cursor + length))
    }

    /// The elements of a constructed element's contents, in order, or nil if any is malformed.
    static func children(_ bytes: [UInt8], of parent: Element) -> [Element]? {
        var result: [Element] = []
        var offset = parent.contents.lowerBound
        while offset < parent.contents.upperBound {
            guard let child = element(bytes, at: offset, limit: parent.contents.upperBound) else { return nil }
            result.append(child)
            offset = child.contents.upperBound
        }
        return result
    }

    /// Whether every element in `bytes` (one element, no trailing bytes) has a definite, minimal length,
    /// recursing into constructed elements.
    static func isStrict(_ bytes: [UInt8]) -> Bool {
        guard let root = element(bytes, at: 0, limit: bytes.count), root.contents.upperBound == bytes.count else {
            return false
        }
        return isStrict(bytes, root)
    }

    private static func isStrict(_ bytes: [UInt8], _ element: Element) -> Bool {
        guard element.isConstructed else { return true }
        guard let children = children(bytes, of: element) else { return false }
        return children.allSatisfy { isStrict(bytes, $0) }
    }

    /// RFC 2986 §4: CertificationRequest ::= SEQUENCE { CertificationRequestInfo, AlgorithmIdentifier, BIT STRING },
    /// CertificationRequestInfo ::= SEQUENCE { INTEGER, Name, SubjectPublicKeyInfo, [0] Attributes } — the
    /// attributes field is not optional, even when empty.
    static func isCertificationRequest(_ bytes: [UInt8]) -> Bool {
        guard isStrict(bytes), let request = element(bytes, at: 0, limit: bytes.count), request.tag == 0x30,
            let parts = children(bytes, of: request), parts.count == 3, parts[0].tag == 0x30, parts[1].tag == 0x30,
            parts[2].tag == 0x03,
            let info = children(bytes, of: parts[0]), info.count == 4
        else { return false }
        return info[0].tag == 0x02 && info[1].tag == 0x30 && info[2].tag == 0x30 && info[3].tag == 0xA0
    }
}
