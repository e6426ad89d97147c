import Foundation
import SigilCrypto

/// What a renewal by client certificate may claim: the identity, and when it was last proven with a token
/// (carried into the new certificate's inventory row, so a chain of renewals ends).
public struct RenewalGrant: Sendable, Equatable {
    public let identity: SPIFFEID
    public let serial: SerialNumber
    public let authenticatedAt: Date
}

/// The outcome of checking a client certificate for renewal.
public enum RenewalDecision: Sendable, Equatable {
    case granted(RenewalGrant)
    case refused(CAError)
}

extension CertificateAuthority {
    /// The identity a TLS client certificate may renew: the caller passes the peer's chain as presented (DER,
    /// leaf first; only the leaf is used, Sigil knows its own intermediates), this looks the certificate up in
    /// the inventory and decides with `authorizeRenewal`. A refusal is returned as a `CAError` to throw.
    public func renewalIdentity(peerChain: [[UInt8]]) async throws -> RenewalDecision {
        guard let leafDER = peerChain.first else {
            return .refused(CAError(.unauthenticated, reason: "no client certificate"))
        }
        let leaf: Certificate
        do {
            leaf = try Certificate(der: leafDER)
        } catch {
            return .refused(CAError(.unauthenticated, reason: "client certificate does not parse"))
        }
        let snapshot = try await snapshot()
        let row: InventoryRecord?
        do {
            row = try await store.certificate(serial: leaf.serial)
        } catch {
            throw CAError(.storeUnavailable, reason: "inventory look-up failed: \(error)")
        }
        return Self.authorizeRenewal(
            leaf: leaf, authorities: snapshot.authorities, inventory: row, trustDomain: configuration.trustDomain,
            maxAge: issuer.policy.renewalMaxAge, at: clock.now)
    }

    /// Decides whether `leaf`, presented as a TLS client certificate, may renew its identity. Pure: no I/O.
    ///
    /// Granted only for a certificate Sigil issued and still stands behind:
    /// 1. an X509-SVID of `trustDomain` (exactly one URI SAN, a workload ID);
    /// 2. issued by one of Sigil's intermediates that is active or retired (not prepared: it never issued;
    ///    not tainted or revoked), whose root is in the bundle and neither tainted nor revoked;
    /// 3. signed by that intermediate and valid now (RFC 5280 path validation);
    /// 4. in the inventory (`inventory`, looked up by serial) with the same identity, public key and issuing
    ///    authority, and not revoked: a leaf forged with a leaked key is not in the inventory;
    /// 5. its identity proven with a token within `maxAge` (`authenticatedAt`), else `reauthentication_required`.
    public static func authorizeRenewal(
        leaf: Certificate, authorities: AuthoritySet, inventory: InventoryRecord?, trustDomain: TrustDomain,
        maxAge: Duration,
        at now: Date
    ) -> RenewalDecision {
        func refuse(_ reason: String) -> RenewalDecision { .refused(CAError(.unauthenticated, reason: reason)) }
        guard
            let uris = leaf.subjectAlternativeNames?.value.compactMap({ name -> String? in
                if case .uri(let uri) = name { return uri } else { return nil }
            }), uris.count == 1, let identity = try? SPIFFEID(parsing: uris[0]), identity.trustDomain == trustDomain,
            identity.isWorkload
        else { return refuse("client certificate is not an X509-SVID of this trust domain") }

        guard let keyID = leaf.authorityKeyIdentifier,
            let issuer = authorities.records.first(where: {
                $0.role == .intermediate && $0.certificate.subjectKeyIdentifier == keyID
            })
        else { return refuse("client certificate was not issued by a Sigil intermediate") }
        guard issuer.state == .active || issuer.state == .retired else {
            return refuse("client certificate issued by \(issuer.state.rawValue) authority \(issuer.id)")
        }
        guard let root = issuer.parentID.flatMap(authorities.record(id:)) else {
            return refuse("issuing authority \(issuer.id) has no known root")
        }
        guard root.state != .tainted && root.state != .revoked else {
            return refuse("client certificate chains to \(root.state.rawValue) root \(root.id)")
        }
        guard authorities.bundleRoots(at: now).contains(where: { $0.id == root.id }),
            case .valid? = try? ChainVerifier.verify(
                leaf, intermediates: [issuer.certificate], roots: [root.certificate], at: now)
        else { return refuse("client certificate does not verify against its issuing authority \(issuer.id) now") }

        guard let row = inventory, row.serial == leaf.serial else {
            return refuse(
                "client certificate serial \(leaf.serial.hex) is not in the inventory: Sigil did not issue it")
        }
        guard row.spiffeID == identity, row.publicKeySHA256 == leaf.publicKey.sha256Fingerprint,
            row.authorityID == issuer.id
        else {
            return refuse(
                "client certificate serial \(leaf.serial.hex) does not match its inventory row (identity, key or issuer)"
            )
        }
        guard row.revokedAt == nil else { return refuse("client certificate serial \(leaf.serial.hex) is revoked") }
        guard now < row.authenticatedAt + maxAge else {
            return .refused(
                CAError(
                    .reauthenticationRequired,
                    reason:
                        "identity last proven with a token at \(Timestamp.seconds(row.authenticatedAt)), over renewal_max_age (\(maxAge.humanReadable)) ago"
                ))
        }
        return .granted(RenewalGrant(identity: identity, serial: row.serial, authenticatedAt: row.authenticatedAt))
    }
}
