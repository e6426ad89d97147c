import Foundation
import Logging
import ServiceLifecycle
import SigilCore
import SigilTokens

/// Sleeps on `clock` until `deadline`. Returns false, at once or early, when graceful shutdown or cancellation
/// has begun: the caller's loop then ends.
func sleepUnlessShuttingDown(until deadline: Date, on clock: any WallClock) async -> Bool {
    guard !Task.isShuttingDownGracefully && !Task.isCancelled else { return false }
    do {
        try await cancelWhenGracefulShutdown { try await clock.sleep(until: deadline) }
        return true
    } catch {
        return false
    }
}

/// Runs `tick` each time `interval` has passed on `clock`, until graceful shutdown or cancellation.
func repeatEvery(_ interval: Duration, on clock: any WallClock, _ tick: () async -> Void) async {
    while await sleepUnlessShuttingDown(until: clock.now + interval, on: clock) {
        await tick()
    }
}

/// Fetches the issuer's JWKS every `interval` (`token_jwks_refresh`), so a key the issuer removed stops
/// verifying without a restart and without waiting for an unknown `kid`. A failed fetch keeps the keys and
/// is logged; the next interval tries again.
struct JWKSRefreshService: Service {
    let verifier: JWKSTokenVerifier
    let interval: Duration
    let clock: any WallClock
    let logger: Logger

    func run() async throws {
        await repeatEvery(interval, on: clock) {
            do {
                let removed = try await verifier.refresh()
                if !removed.isEmpty {
                    logger.notice(
                        "token keys removed by the issuer are no longer trusted",
                        metadata: ["sigil.kids": "\(removed.sorted())"])
                }
            } catch {
                logger.warning(
                    "refreshing the token issuer's JWKS failed; keeping the current keys",
                    metadata: [LogKey.reason: "\(error)"])
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
        await repeatEvery(interval, on: clock) { await flush() }
        await flush()
    }

    func flush() async {
        guard let summary = budget.takeSummary() else { return }
        do {
            try await ca.audit(
                .denySummary, actor: "anonymous", outcome: .failure, code: "denials_over_budget", reason: summary.reason
            )
        } catch {
            logger.error(
                "the denial summary could not be audited",
                metadata: [LogKey.reason: "\(error)", "sigil.denials": "\(summary.total)"])
        }
    }
}
