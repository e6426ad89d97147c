import Foundation
import SigilCore
import SigilCrypto
import Synchronization

/// Remembers successful verifications by the token's SHA-256 until the token's `exp` (the verifier's
/// `expiresAt`), so renewals do not pay the signature check again, and only while the inner verifier still
/// trusts them (a key removed from the JWKS ends them at once). Bounded: when full, expired entries go first,
/// then the oldest.
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
                entries = entries.filter { now < $0.value.expiresAt }
                if entries.count >= capacity, let oldest = entries.min(by: { $0.value.expiresAt < $1.value.expiresAt })
                {
                    entries.removeValue(forKey: oldest.key)
                }
            }
            entries[key] = verified
        }
        return verified
    }
}
