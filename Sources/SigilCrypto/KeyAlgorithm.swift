/// The type and size of a public/private key pair.
public enum KeyAlgorithm: Hashable, Sendable, CustomStringConvertible {
    /// ECDSA on a named curve; `curve` is the NIST name (`P-256`, `P-384`) or OpenSSL's name for others.
    case ec(curve: String)
    /// RSA with a modulus of `bits` bits.
    case rsa(bits: Int)
    case ed25519
    /// Any other key type, by OpenSSL's name; never acceptable for issuance.
    case other(String)

    public static let p256 = KeyAlgorithm.ec(curve: "P-256")
    public static let p384 = KeyAlgorithm.ec(curve: "P-384")

    /// The algorithms `PrivateKey.generate` supports.
    public static let generatable: [KeyAlgorithm] = [
        .p256, .p384, .rsa(bits: 2048), .rsa(bits: 3072), .rsa(bits: 4096), .ed25519,
    ]

    /// Parses the configuration spelling: `ec-p256`, `ec-p384`, `rsa-2048`, `rsa-3072`, `rsa-4096`, `ed25519`.
    public init?(configurationName name: String) {
        switch name.lowercased() {
        case "ec-p256", "p256", "p-256": self = .p256
        case "ec-p384", "p384", "p-384": self = .p384
        case "ed25519": self = .ed25519
        case let rsa where rsa.hasPrefix("rsa-"):
            guard let bits = Int(rsa.dropFirst(4)), [2048, 3072, 4096].contains(bits) else { return nil }
            self = .rsa(bits: bits)
        default: return nil
        }
    }

    /// The configuration spelling (inverse of `init(configurationName:)`).
    public var configurationName: String {
        switch self {
        case .ec(let curve): return "ec-" + curve.lowercased().replacingOccurrences(of: "-", with: "")
        case .rsa(let bits): return "rsa-\(bits)"
        case .ed25519: return "ed25519"
        case .other(let name): return name
        }
    }

    public var description: String {
        switch self {
        case .ec(let curve): return "EC \(curve)"
        case .rsa(let bits): return "RSA-\(bits)"
        case .ed25519: return "Ed25519"
        case .other(let name): return name
        }
    }

    /// JWK `kty` for this key (RFC 7518 §6.1, RFC 8037 for Ed25519).
    public var jwkKeyType: String {
        switch self {
        case .ec: return "EC"
        case .rsa: return "RSA"
        case .ed25519: return "OKP"
        case .other(let name): return name
        }
    }

    public var isRSA: Bool { if case .rsa = self { return true } else { return false } }
}
