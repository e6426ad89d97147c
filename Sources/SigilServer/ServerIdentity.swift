import Foundation
import NIOSSL
import SigilCore
import SigilCrypto
import Synchronization

/// The server's own TLS certificate, issued by its active intermediate for the configured names and swapped
/// in for new handshakes when renewed (no restart).
public final class ServerIdentity: Sendable {
    struct Current: Sendable {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        let certificate: Certificate
        let renewAt: Date
    }

    private let names: [String]
    private let current = Mutex<Current?>(nil)

    init(names: [String]) { self.names = names }

    var renewAt: Date? { current.withLock { $0?.renewAt } }
    var certificate: Certificate? { current.withLock { $0?.certificate } }

    /// Issues a fresh certificate from `signer`; lifetime 24 h or the signer's remaining life, whichever is shorter.
    func renew(with signer: SigningAuthority, at now: Date) throws {
        let key = try PrivateKey.generate(.p256)
        var dns: [GeneralName] = []
        var ips: [GeneralName] = []
        for name in names {
            if name.contains(":") || name.split(separator: ".").allSatisfy({ Int($0) != nil }) {
                ips.append(.ip(name))
            } else {
                dns.append(.dns(name))
            }
        }
        let notBefore = max((now - .seconds(30)).truncatedToSecond, signer.record.notBefore)
        let notAfter = min((now + .seconds(86_400)).truncatedToSecond, signer.record.notAfter)
        let template = CertificateTemplate(
            serial: try SerialNumber.random(),
            subject: DistinguishedName([.init("O", "Sigil"), .init("CN", names.first ?? "sigil")]),
            notBefore: notBefore, notAfter: notAfter, basicConstraints: .endEntity, keyUsage: [.digitalSignature],
            extendedKeyUsage: [.serverAuth], subjectAlternativeNames: dns + ips)
        let certificate = try CertificateSigner.sign(template, subjectKey: .key(key), issuer: signer.identity)
        let chain = try ([certificate] + signer.chain).map { try NIOSSLCertificate(bytes: $0.der, format: .der) }
        let sslKey = try NIOSSLPrivateKey(bytes: Array(try key.pkcs8PEM().utf8), format: .pem)
        // Renew halfway through what is left from now (not from the backdated notBefore), and never sooner than
        // a second from now: a certificate capped by a nearly expired intermediate must not be re-issued in a
        // loop; the intermediate's rotation brings the next long-lived one.
        let remaining = notAfter.timeIntervalSince(now)
        let renewAt = now.addingTimeInterval(max(remaining / 2, 1))
        let renewed = Current(chain: chain, key: sslKey, certificate: certificate, renewAt: renewAt)
        current.withLock { $0 = renewed }
    }

    /// TLS configuration whose per-handshake callback serves the current certificate. Client certificates are
    /// requested but optional; any presented chain is checked by the route (against live authority state, taint
    /// included), not by the TLS layer, whose trust store could not follow rotations.
    func tlsConfiguration() throws -> TLSConfiguration {
        guard let initial = current.withLock({ $0 }) else {
            throw CAError(.noActiveAuthority, reason: "no server certificate yet")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: initial.chain.map { .certificate($0) }, privateKey: .privateKey(initial.key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = .optionalVerification
        configuration.sslContextCallback = { [weak self] _, promise in
            guard let now = self?.current.withLock({ $0 }) else {
                promise.succeed(.noChanges)
                return
            }
            var override = NIOSSLContextConfigurationOverride()
            override.certificateChain = now.chain.map { .certificate($0) }
            override.privateKey = .privateKey(now.key)
            promise.succeed(override)
        }
        return configuration
    }
}
