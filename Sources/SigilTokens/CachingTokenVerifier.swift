import Foundation
import SigilCore
import SigilCrypto
import Synchronization

/// Remembers successful verifications by the token's SHA-256 until the token's `exp` (the verifier's
/// `expiresAt`), so renewals do not pay the signature check again, and only while the inner verifier still
/// trusts them (a key removed from the JWKS ends them at once). Bounded: when full, expired entries go first,
/// then those expiring soonest, a tenth of the capacity at a time.
public final class CachingTokenVerifier: TokenVerifier {
    private let inner: any TokenVerifier
    private let clock: any WallClock
    private let capacity: Int
    private let entries = Mutex<[String: VerifiedToken]>([:])
    private let counters = Mutex<(hits: Int, misses: Int)>((0, 0))

    public init(_ inner: any TokenVerifier, clock: any WallClock, capacity: Int = 10_000) {
        self.inner = inner
        self.clock = clock
        self.capacity = max(1, capacity)
    }

    public var statistics: (hits: Int, misses: Int) { counters.withLock { $0 } }

    /// Verifications held now.
    public var count: Int { entries.withLock { $0.count } }

    public func stillTrusts(_ token: VerifiedToken) -> Bool { inner.stillTrusts(token) }

    public func verify(_ token: String) async throws -> VerifiedToken {
        let key = hexString(Digest.sha256(Array(token.utf8)))
        let now = clock.now
        if let cached = entries.withLock({ $0[key] }) {
            if now < cached.expiresAt && inner.stillTrusts(cached) {
                counters.withLock { $0.hits += 1 }
                return cached
            }
            // Expired, or its key left the issuer's set: verified again (and refused) below.
            entries.withLock { _ = $0.removeValue(forKey: key) }
        }
        counters.withLock { $0.misses += 1 }
        let verified = try await inner.verify(token)
        entries.withLock { entries in
            if entries.count >= capacity {
                // One pass frees a tenth of the cache: a pass per insertion (a copy of 10,000 entries under the
                // lock) made each new token in a startup storm cost more than its signature check.
                entries = entries.filter { now < $0.value.expiresAt }
                let excess = entries.count - capacity + max(1, capacity / 10)
                if excess > 0 {
                    let soonest = entries.sorted { $0.value.expiresAt < $1.value.expiresAt }.prefix(excess)
                    for (evicted, _) in soonest { entries.removeValue(forKey: evicted) }
                }
            }
            entries[key] = verified
        }
        return verified
    }
}
