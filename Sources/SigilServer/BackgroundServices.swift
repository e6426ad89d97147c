import Foundation
import Logging
import ServiceLifecycle
import SigilCore

/// Fetches the issuer's JWKS every `interval` (`token_jwks_refresh`), so a key the issuer removed stops
/// verifying without a restart and without waiting for an unknown `kid`. A failed fetch keeps the keys and
/// is logged; the next interval tries again.
struct JWKSRefreshService: Service {
    let verifier: JWKSTokenVerifier
    let interval: Duration
    let clock: any WallClock
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown { try await self.clock.sleep(until: self.clock.now + self.interval) }
            } catch {
                return
            }
            do {
                let removed = try await verifier.refresh()
                if !removed.isEmpty {
                    logger.notice("token keys removed by the issuer are no longer trusted", metadata: ["sigil.kids": "\(removed.sorted())"])
                }
            } catch {
                logger.warning("refreshing the token issuer's JWKS failed; keeping the current keys", metadata: [LogKey.reason: "\(error)"])
            }
        }
    }
}

/// Writes one `deny_summary` audit record per `interval` for the unauthenticated denials that went over the
/// audit budget (`DenialBudget`), and a last one at shutdown.
struct DenialSummaryService: Service {
    let budget: DenialBudget
    let ca: CertificateAuthority
    let interval: Duration
    let clock: any WallClock
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown { try await self.clock.sleep(until: self.clock.now + self.interval) }
            } catch {
                break
            }
            await flush()
        }
        await flush()
    }

    func flush() async {
        guard let summary = budget.takeSummary() else { return }
        do {
            try await ca.audit(.denySummary, actor: "anonymous", outcome: .failure, code: "denials_over_budget", reason: summary.reason)
        } catch {
            logger.error("the denial summary could not be audited", metadata: [LogKey.reason: "\(error)", "sigil.denials": "\(summary.total)"])
        }
    }
}
