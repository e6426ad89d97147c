import Foundation
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL
import SigilCore
import SigilCrypto
import Synchronization

/// The server's own TLS certificate, issued by its active intermediate for the configured names, and the TLS
/// context that serves it. Renewal builds a new context that new handshakes use (no restart, no per-handshake
/// callback); connections already open keep theirs.
///
/// The context is also where TLS session resumption lives: BoringSSL issues TLS 1.3 session tickets under keys
/// it generates in memory per context, so each renewal (at most 12 hours apart, at every intermediate
/// activation, and at restart) rotates the ticket keys. A ticket from before that is declined and the client
/// falls back to a full handshake; keys are never written anywhere.
public final class ServerIdentity: Sendable {
    struct Current: Sendable {
        let certificate: Certificate
        let renewAt: Date
        /// HTTP/1.1 (no ALPN): the HTTPS API.
        let https: NIOSSLContext
        /// ALPN `h2`, which gRPC clients require: Istio's CA API, when it is served.
        let grpc: NIOSSLContext?
    }

    /// Which listener a context is for.
    enum Listener: Sendable { case https, grpc }

    private let names: [String]
    private let servesGRPC: Bool
    private let current = Mutex<Current?>(nil)

    /// - Parameter servesGRPC: whether to keep an `h2` context too (`--grpc-listen`).
    init(names: [String], servesGRPC: Bool = false) {
        self.names = names
        self.servesGRPC = servesGRPC
    }

    var renewAt: Date? { current.withLock { $0?.renewAt } }
    var certificate: Certificate? { current.withLock { $0?.certificate } }

    /// The context for a new connection to `listener`.
    func context(_ listener: Listener = .https) throws -> NIOSSLContext {
        guard let context = current.withLock({ current in listener == .https ? current?.https : current?.grpc }) else {
            throw CAError(.noActiveAuthority, reason: "no server certificate yet")
        }
        return context
    }

    /// Issues a fresh certificate from `signer`; lifetime 24 h or the signer's remaining life, whichever is shorter.
    func renew(with signer: SigningAuthority, at now: Date) throws {
        let key = try PrivateKey.generate(.p256)
        // DNS names first, then addresses, in the configured order within each.
        let alternativeNames = names.map(GeneralName.init(host:))
        let dns = alternativeNames.filter { if case .dns = $0 { true } else { false } }
        let ips = alternativeNames.filter { if case .ip = $0 { true } else { false } }
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
        // Client certificates are requested but optional; any presented chain is checked by the route (against
        // live authority state, taint included), not by the TLS layer, whose trust store could not follow
        // rotations. A resumed session carries the client certificate of its full handshake, checked the same way.
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(sslKey))
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = .optionalVerification
        let https = try NIOSSLContext(configuration: configuration)
        configuration.applicationProtocols = ["h2"]
        let grpc = servesGRPC ? try NIOSSLContext(configuration: configuration) : nil
        // Renew halfway through what is left from now (not from the backdated notBefore), and never sooner than
        // a second from now: a certificate capped by a nearly expired intermediate must not be re-issued in a
        // loop; the intermediate's rotation brings the next long-lived one.
        let remaining = notAfter.timeIntervalSince(now)
        let renewAt = now.addingTimeInterval(max(remaining / 2, 1))
        let renewed = Current(certificate: certificate, renewAt: renewAt, https: https, grpc: grpc)
        current.withLock { $0 = renewed }
    }
}

/// Hummingbird's TLS child channel, but with the context taken from `ServerIdentity` per connection (Hummingbird's
/// own `TLSChannel` fixes one context at start).
struct ServerTLSChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let identity: ServerIdentity

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            // Any presented client certificate passes the handshake (which proves possession of its key); the
            // issuance route then checks it against live authority state, taint included.
            try channel.pipeline.syncOperations.addHandler(
                NIOSSLServerHandler(
                    context: try identity.context(),
                    customVerificationCallback: { _, promise in promise.succeed(.certificateVerified) },
                    configuration: .init()))
        }.flatMap { base.setup(channel: channel, logger: logger) }
    }

    func handle(value: Value, logger: Logger) async { await base.handle(value: value, logger: logger) }
}
