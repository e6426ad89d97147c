// sigil-fuzz TARGET [libFuzzer flags] [corpus dirs or files]
//
// One libFuzzer harness per untrusted-input parser of Sigil. Built with -sanitize=fuzzer,address by
// scripts/fuzz it is a libFuzzer binary; in a normal build it replays the files it is given once (the
// committed corpus and crash regressions run in scripts/test that way). Every target must return for any
// input: a trap, a sanitizer report, a hang or a broken property below is a finding.
import CLibFuzzer
import Dispatch
import Foundation
import SigilCore
import SigilCrypto
import SigilIstioGRPC
import SigilTokens

let targets: [String: (UnsafeRawBufferPointer) -> Void] = [
    "csr-der": fuzzCSRDER,
    "csr-pem": fuzzCSRPEM,
    "certificate": fuzzCertificate,
    "pem": fuzzPEM,
    "spiffe-id": fuzzSPIFFEID,
    "jwt": fuzzJWT,
    "request": fuzzRequest,
    "istio": fuzzIstio,
]

// MARK: Targets

/// A CSR from DER, then everything issuance reads from it.
func fuzzCSRDER(_ data: UnsafeRawBufferPointer) {
    guard let csr = try? CertificateSigningRequest(der: Array(data)) else { return }
    readEverything(csr)
}

/// A CSR from PEM text (the wire format).
func fuzzCSRPEM(_ data: UnsafeRawBufferPointer) {
    guard let csr = try? CertificateSigningRequest(pem: String(decoding: data, as: UTF8.self)) else { return }
    readEverything(csr)
}

func readEverything(_ csr: CertificateSigningRequest) {
    _ = csr.verifySignature()
    _ = csr.subject.description
    _ = csr.publicKey?.algorithm
    _ = csr.publicKey?.sha256Fingerprint
    let extensions = csr.requestedExtensions
    _ = extensions.subjectAlternativeNames.map(\.description)
    _ = try? csr.der
    // The policy's verdict on it, for a fixed identity: every path of CertificateIssuer.evaluate.
    _ = Fixture.evaluate(IssuanceRequest(csr: csr, identity: Fixture.identity))
}

/// A certificate from DER and every accessor the CA, inspect and the agent use.
func fuzzCertificate(_ data: UnsafeRawBufferPointer) {
    guard let certificate = try? Certificate(der: Array(data)) else { return }
    _ = certificate.serial.hex
    _ = certificate.subject.description
    _ = certificate.issuer.description
    _ = certificate.notBefore
    _ = certificate.notAfter
    _ = certificate.publicKey.algorithm
    _ = certificate.signatureAlgorithm
    _ = certificate.subjectKeyIdentifier
    _ = certificate.authorityKeyIdentifier
    _ = certificate.subjectAlternativeNames?.value.map(\.description)
    _ = certificate.basicConstraints
    _ = certificate.keyUsage
    _ = certificate.extendedKeyUsage
    _ = certificate.extensionOIDs
    _ = certificate.jwkPublicParameters
    _ = certificate.isSigned(by: certificate)
    _ = CertificateLint.leafProblems(
        certificate, issuer: certificate, identity: Fixture.identity, extraNames: [], publicKey: certificate.publicKey)
    _ = CertificateLint.authorityProblems(
        certificate, role: .intermediate, issuer: certificate, trustDomain: Fixture.identity.trustDomain)
}

/// PEM decoding; a decoded block must encode back to itself.
func fuzzPEM(_ data: UnsafeRawBufferPointer) {
    guard let blocks = try? PEMBlock.parseAll(String(decoding: data, as: UTF8.self)) else { return }
    for block in blocks {
        guard let again = try? PEMBlock.parseAll(block.encoded), again == [block] else {
            // A broken property is a finding; trapping is how libFuzzer records it.
            fatalError("PEM encode → decode changed \(block.label), \(block.der.count) B")  // precondition: finding
        }
    }
}

/// SPIFFE ID parsing; an accepted ID must read back to itself from its own spelling.
func fuzzSPIFFEID(_ data: UnsafeRawBufferPointer) {
    let text = String(decoding: data, as: UTF8.self)
    guard let id = try? SPIFFEID(parsing: text) else { return }
    guard let again = try? SPIFFEID(parsing: id.description), again == id else {
        fatalError("SPIFFE ID does not survive description → parse: \(id)")  // precondition: finding
    }
    if let workload = WorkloadIdentity(id), (try? workload.spiffeID(in: id.trustDomain)) != id {
        fatalError("workload identity \(workload) does not map back to \(id)")  // precondition: finding
    }
}

/// Bearer tokens through the verifier the server uses (header screening, JWKS look-up, JWTKit decoding,
/// claim checks), against a fixed JWKS with one RSA and one EC key.
func fuzzJWT(_ data: UnsafeRawBufferPointer) {
    let token = String(decoding: data, as: UTF8.self)
    blocking { _ = try? await Fixture.verifier.verify(token) }
}

/// The request body exactly as the server reads it: JSON → IssuanceRequest.Body → IssuanceRequest → policy.
func fuzzRequest(_ data: UnsafeRawBufferPointer) {
    guard let request = try? IssuanceRequest(body: Array(data), identity: Fixture.identity) else { return }
    _ = Fixture.evaluate(request)
}

/// A CreateCertificate request (binary protobuf) as Istio's CA API reads it: decoded, its metadata read, its CSR
/// parsed and checked by the policy.
func fuzzIstio(_ data: UnsafeRawBufferPointer) {
    guard let request = try? Istio_V1_Auth_IstioCertificateRequest(untrusted: Array(data)) else { return }
    _ = request.metadataClusterID
    _ = request.impersonates
    _ = request.validityDuration
    guard let csr = try? CertificateSigningRequest(pem: request.csr) else { return }
    readEverything(csr)
}

// MARK: Fixtures

enum Fixture {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
    static let identity = try! SPIFFEID(parsing: "spiffe://cluster.local/ns/default/sa/web")  // precondition: literal
    static let issuer = CertificateIssuer(policy: IssuancePolicy(dnsTemplates: ["{service_account}.{namespace}.svc"]))
    static let verifier = JWKSTokenVerifier(
        policy: TokenPolicy(issuer: "https://kubernetes.default.svc"), source: StaticJWKS(), clock: FixedClock())

    /// The policy's verdict for an issuer of the fixture's trust domain with a day left to live.
    static func evaluate(_ request: IssuanceRequest) -> PolicyDecision {
        issuer.evaluate(request, trustDomain: identity.trustDomain, issuerNotAfter: now + .seconds(86_400), at: now)
    }
}

struct FixedClock: WallClock {
    var now: Date { Fixture.now }
    func sleep(until deadline: Date) async throws {}
}

/// One RSA key (kid "rsa") and one P-256 key (kid "ec"), made once per process.
struct StaticJWKS: JWKSSource {
    static let document: Data = {
        var keys: [[String: String]] = []
        for (kid, algorithm, alg) in [("rsa", KeyAlgorithm.rsa(bits: 2048), "RS256"), ("ec", .p256, "ES256")] {
            var jwk = try! PrivateKey.generate(algorithm).jwkPublicParameters  // precondition: supported algorithm
            jwk["kid"] = kid
            jwk["alg"] = alg
            jwk["use"] = "sig"
            jwk["kty"] = alg.hasPrefix("RS") ? "RSA" : "EC"
            keys.append(jwk)
        }
        return try! JSONSerialization.data(withJSONObject: ["keys": keys])  // precondition: strings only
    }()
    func fetchJWKS() async throws -> Data { Self.document }
}

/// Runs async work to completion from libFuzzer's synchronous callback.
func blocking(_ body: @escaping @Sendable () async -> Void) {
    let done = DispatchSemaphore(value: 0)
    Task {
        await body()
        done.signal()
    }
    done.wait()
}

// MARK: Driver

nonisolated(unsafe) var selected: (UnsafeRawBufferPointer) -> Void = { _ in }

var arguments = CommandLine.arguments
guard arguments.count >= 2, let target = targets[arguments[1]] else {
    let names = targets.keys.sorted().joined(separator: ", ")
    FileHandle.standardError.write(
        Data("usage: sigil-fuzz TARGET [libFuzzer flags] [corpus…]\ntargets: \(names)\n".utf8))
    exit(2)
}
selected = target
// Warm up: one-time state (the verifier's key set, fixtures, OpenSSL tables) is made before libFuzzer starts
// counting allocations per input, so it is not mistaken for a leak of the first input.
blocking { _ = try? await Fixture.verifier.verify("eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYSJ9.e30.AAAA") }
for name in targets.keys.sorted() { targets[name]!(UnsafeRawBufferPointer(start: nil, count: 0)) }
arguments.remove(at: 1)
var argc = Int32(arguments.count)
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = {
    let pointers = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: arguments.count + 1)
    for (index, argument) in arguments.enumerated() { pointers[index] = strdup(argument) }
    pointers[arguments.count] = nil
    return pointers
}()
exit(
    LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        selected(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    })
