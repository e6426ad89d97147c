internal import COpenSSL
import Foundation

/// A subjectAltName entry (RFC 5280 §4.2.1.6).
public enum GeneralName: Hashable, Sendable, CustomStringConvertible {
    case uri(String)
    case dns(String)
    /// An IPv4 or IPv6 address in its textual form.
    case ip(String)
    case email(String)
    /// Any other name form, by its GENERAL_NAME type number; never issued.
    case other(type: Int)

    public var description: String {
        switch self {
        case .uri(let value): return "URI:\(value)"
        case .dns(let value): return "DNS:\(value)"
        case .ip(let value): return "IP:\(value)"
        case .email(let value): return "email:\(value)"
        case .other(let type): return "other(\(type))"
        }
    }

    /// A host as a name: `.ip` for an IPv4 or IPv6 literal (brackets allowed), `.dns` for anything else.
    public init(host: String) {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        var v4 = in_addr()
        var v6 = in6_addr()
        self = inet_pton(AF_INET, bare, &v4) == 1 || inet_pton(AF_INET6, bare, &v6) == 1 ? .ip(bare) : .dns(bare)
    }

    /// Reads an OpenSSL GENERAL_NAME.
    init(_ name: UnsafeMutablePointer<GENERAL_NAME>) {
        let value = name.pointee.d
        switch name.pointee.type {
        case GEN_URI: self = .uri(String(decoding: asn1Bytes(value.uniformResourceIdentifier), as: UTF8.self))
        case GEN_DNS: self = .dns(String(decoding: asn1Bytes(value.dNSName), as: UTF8.self))
        case GEN_EMAIL: self = .email(String(decoding: asn1Bytes(value.rfc822Name), as: UTF8.self))
        case GEN_IPADD:
            let bytes = asn1Bytes(value.iPAddress)
            self = .ip(Self.formatIP(bytes))
        default: self = .other(type: Int(name.pointee.type))
        }
    }

    static func formatIP(_ bytes: [UInt8]) -> String {
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        if bytes.count == 16 {
            var buffer = [CChar](repeating: 0, count: 64)
            _ = bytes.withUnsafeBytes { inet_ntop(AF_INET6, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
            return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return "invalid(\(hexString(bytes)))"
    }

    /// Builds an OpenSSL GENERAL_NAME (caller owns it).
    func makeGeneralName() throws -> UnsafeMutablePointer<GENERAL_NAME> {
        let type: Int32
        let text: String
        switch self {
        case .uri(let value): (type, text) = (GEN_URI, value)
        case .dns(let value): (type, text) = (GEN_DNS, value)
        case .email(let value): (type, text) = (GEN_EMAIL, value)
        case .ip(let value):
            guard let octets = a2i_IPADDRESS(value) else {
                throw OpenSSLError.drain(.invalidArgument, "not an IP address: \(value)")
            }
            guard let name = GENERAL_NAME_new() else {
                ASN1_OCTET_STRING_free(octets)
                throw OpenSSLError.drain(.operationFailed, "GENERAL_NAME_new")
            }
            GENERAL_NAME_set0_value(name, GEN_IPADD, octets)
            return name
        case .other:
            throw OpenSSLError(code: .invalidArgument, reason: "cannot encode \(self)", file: #fileID, line: #line)
        }
        guard let string = ASN1_IA5STRING_new() else {
            throw OpenSSLError.drain(.operationFailed, "ASN1_IA5STRING_new")
        }
        let bytes = Array(text.utf8)
        guard ASN1_STRING_set(string, bytes, Int32(bytes.count)) == 1, let name = GENERAL_NAME_new() else {
            ASN1_IA5STRING_free(string)
            throw OpenSSLError.drain(.operationFailed, "GENERAL_NAME")
        }
        GENERAL_NAME_set0_value(name, type, string)
        return name
    }
}

/// Reads and frees a GENERAL_NAMES stack.
func readGeneralNames(_ stack: OpaquePointer?) -> [GeneralName] {
    guard let stack else { return [] }
    defer { copenssl_sk_GENERAL_NAME_pop_free(stack) }
    return (0..<copenssl_sk_GENERAL_NAME_num(stack)).compactMap { index in
        copenssl_sk_GENERAL_NAME_value(stack, index).map(GeneralName.init)
    }
}

/// Builds a GENERAL_NAMES stack (caller frees with `copenssl_sk_GENERAL_NAME_pop_free`).
func makeGeneralNames(_ names: [GeneralName]) throws -> OpaquePointer {
    guard let stack = copenssl_sk_GENERAL_NAME_new_null() else {
        throw OpenSSLError.drain(.operationFailed, "sk_GENERAL_NAME_new")
    }
    for name in names {
        do {
            let entry = try name.makeGeneralName()
            guard copenssl_sk_GENERAL_NAME_push(stack, entry) > 0 else {
                GENERAL_NAME_free(entry)
                throw OpenSSLError.drain(.operationFailed, "sk_GENERAL_NAME_push")
            }
        } catch {
            copenssl_sk_GENERAL_NAME_pop_free(stack)
            throw error
        }
    }
    return stack
}

/// An X.500 distinguished name as an ordered list of (attribute short name, UTF-8 value).
public struct DistinguishedName: Hashable, Sendable, CustomStringConvertible {
    public struct Attribute: Hashable, Sendable {
        public let type: String
        public let value: String
        public init(_ type: String, _ value: String) {
            self.type = type
            self.value = value
        }
    }

    public let attributes: [Attribute]

    public init(_ attributes: [Attribute]) { self.attributes = attributes }

    public static let empty = DistinguishedName([])

    public var isEmpty: Bool { attributes.isEmpty }

    /// RFC 4514-style rendering (most significant attribute first, as written).
    public var description: String {
        attributes.map { "\($0.type)=\($0.value.replacingOccurrences(of: ",", with: "\\,"))" }.joined(separator: ", ")
    }

    /// Builds an X509_NAME (caller frees).
    func makeName() throws -> OpaquePointer {
        guard let name = X509_NAME_new() else { throw OpenSSLError.drain(.operationFailed, "X509_NAME_new") }
        for attribute in attributes {
            let value = Array(attribute.value.utf8)
            guard X509_NAME_add_entry_by_txt(name, attribute.type, MBSTRING_UTF8, value, Int32(value.count), -1, 0) == 1
            else {
                X509_NAME_free(name)
                throw OpenSSLError.drain(.invalidArgument, "bad name attribute \(attribute.type)")
            }
        }
        return name
    }

    /// Reads an X509_NAME it does not own.
    init(reading name: OpaquePointer?) {
        guard let name else {
            self.init([])
            return
        }
        var attributes: [Attribute] = []
        for index in 0..<X509_NAME_entry_count(name) {
            guard let entry = X509_NAME_get_entry(name, index) else { continue }
            let nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry))
            let type: String
            if nid != NID_undef, let short = OBJ_nid2sn(nid) {
                type = String(cString: short)
            } else {
                var buffer = [CChar](repeating: 0, count: 128)
                OBJ_obj2txt(&buffer, Int32(buffer.count), X509_NAME_ENTRY_get_object(entry), 1)
                type = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
            var utf8: UnsafeMutablePointer<UInt8>? = nil
            let length = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry))
            var value = ""
            if length >= 0, let utf8 {
                value = String(decoding: UnsafeBufferPointer(start: utf8, count: Int(length)), as: UTF8.self)
                copenssl_free(utf8)
            } else {
                drainErrorQueue()
            }
            attributes.append(Attribute(type, value))
        }
        self.init(attributes)
    }
}
