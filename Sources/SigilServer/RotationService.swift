import Foundation
import Logging
import ServiceLifecycle
import SigilCore
import SigilFiles
import SigilAPIModels
import SigilCrypto
import SigilStore

/// Keeps the authorities and the server's own certificate current: re-reads the store (changes by other
/// replicas or the admin socket), asks the planner what to do for root and intermediate, does it, renews the
/// TLS certificate at half-life, and sleeps until the next decision point (capped, so clock jumps correct
/// themselves).
final class RotationService: Service {
    let ca: CertificateAuthority
    let identity: ServerIdentity
    let metrics: ServerMetrics
    let directory: DataDirectory
    let clock: any WallClock
    let refreshInterval: Duration
    let logger: Logger
    let store: any CAStore
    /// This replica's name in the rotation lease.
    let holder: String
    static let leaseName = "rotation"
    /// A crashed holder's lease lapses after this; others take over.
    static let leaseDuration: Duration = .seconds(30)

    init(
        ca: CertificateAuthority, store: any CAStore, identity: ServerIdentity, metrics: ServerMetrics,
        directory: DataDirectory,
        clock: any WallClock, refreshInterval: Duration, logger: Logger
    ) {
        self.store = store
        self.holder = "\(ProcessInfo.processInfo.hostName)/\(getpid())/\(UUID().uuidString.prefix(8))"
        self.ca = ca
        self.identity = identity
        self.metrics = metrics
        self.directory = directory
        self.clock = clock
        self.refreshInterval = refreshInterval
        self.logger = logger
    }

    func run() async throws {
        var next = clock.now
        while await sleepUnlessShuttingDown(until: next, on: clock) {
            do {
                next = try await step()
            } catch {
                logger.error("rotation step failed; retrying", metadata: [LogKey.reason: "\(error)"])
                next = clock.now + .seconds(5)
            }
        }
    }

    /// One pass; returns when the next pass is due.
    func step() async throws -> Date {
        try await ca.reload()
        var next = clock.now + refreshInterval
        // Only the lease holder rotates; the others follow through `reload` within one refresh interval.
        let leader = try await store.acquireLease(
            Self.leaseName, holder: holder, expiresAt: clock.now + Self.leaseDuration, now: clock.now)
        for role in [AuthorityRole.root, .intermediate] where leader {
            let action = try await ca.plan(role)
            switch action {
            case .none(let nextCheck):
                next = min(next, nextCheck)
            default:
                let changed: [String]
                do {
                    changed = try await ca.perform(action, for: role)
                } catch let error as CAError where error.code == .conflict {
                    next = min(next, clock.now + .seconds(1))  // a break-glass rotation is running; look again soon
                    continue
                }
                logger.notice(
                    "rotation",
                    metadata: [
                        "sigil.role": "\(role.rawValue)", "sigil.action": "\(action)",
                        "sigil.authorities": "\(changed)",
                    ])
                next = clock.now
            }
        }
        let snapshot = try await ca.snapshot()
        try writeBundle(snapshot.authorities)
        if let signer = snapshot.signer {
            let issuedBy = identity.certificate?.authorityKeyIdentifier
            if identity.renewAt.map({ $0 <= clock.now }) ?? true
                || issuedBy != signer.record.certificate.subjectKeyIdentifier
            {
                try identity.renew(with: signer, at: clock.now)
                logger.info("server certificate renewed", metadata: [LogKey.authority: "\(signer.record.id)"])
            }
            if let renewAt = identity.renewAt { next = min(next, renewAt) }
        }
        metrics.authorityExpiry(snapshot.authorities.records, at: clock.now)
        return next
    }

    /// Rewrites `bundle.pem` when the set of roots changed.
    private func writeBundle(_ authorities: AuthoritySet) throws {
        let pem = SPIFFEBundle.pem(authorities.bundleRoots(at: clock.now).map(\.certificate))
        let current = FileManager.default.contents(atPath: directory.bundlePath).map {
            String(decoding: $0, as: UTF8.self)
        }
        if current != pem { try SecureFile.write(Data(pem.utf8), to: directory.bundlePath, mode: 0o644) }
    }
}
