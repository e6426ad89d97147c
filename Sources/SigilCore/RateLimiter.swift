import Foundation
import Synchronization

/// A sustained rate with a burst allowance. `perSecond == 0` turns the limit off.
public struct RateLimit: Sendable, Equatable, CustomStringConvertible {
    /// Requests per second allowed on average.
    public var perSecond: Double
    /// Requests allowed at once after a quiet period (the bucket's size); at least 1 when the limit is on.
    public var burst: Int

    public init(perSecond: Double, burst: Int) {
        self.perSecond = perSecond
        self.burst = burst
    }

    public static let off = RateLimit(perSecond: 0, burst: 0)
    public var isOff: Bool { perSecond <= 0 }
    public var description: String { isOff ? "off" : "\(perSecond)/s, burst \(burst)" }

    /// - Throws: `CAError` (`configuration_invalid`) for a negative rate or a burst below 1 with the limit on.
    public func validate(_ name: String) throws {
        guard perSecond >= 0, perSecond.isFinite else {
            throw CAError.configuration(reason: "\(name): rate must be 0 (off) or positive")
        }
        guard isOff || burst >= 1 else { throw CAError.configuration(reason: "\(name): burst must be at least 1") }
    }
}

/// What a `RateLimiter` decided for one request.
public enum RateDecision: Sendable, Equatable {
    case allowed
    /// Refused. `retryAfter` is when one request's worth has refilled; `audit` is true for the first refusal of
    /// this key in an `auditInterval`, so a flood costs one durable audit record a minute, not one per request.
    case limited(retryAfter: Duration, audit: Bool)
}

/// Token buckets keyed by a string (a client address, an identity), refilled from the injected clock.
///
/// Memory is bounded: beyond `maxKeys` buckets, the full ones (keys that are idle) are dropped; if none are
/// full, the oldest half is dropped. Dropping a bucket only ever forgives, never refuses, a request.
public final class RateLimiter: Sendable {
    public let limit: RateLimit
    /// How often a key's refusals are audited (the first in each interval). Default 60 s.
    public let auditInterval: Duration
    let maxKeys: Int
    private let clock: any WallClock
    private let buckets = Mutex<[String: Bucket]>([:])

    struct Bucket {
        var tokens: Double
        var updated: Date
        var lastAuditedRefusal: Date?
    }

    public init(limit: RateLimit, clock: any WallClock, auditInterval: Duration = .seconds(60), maxKeys: Int = 100_000)
    {
        self.limit = limit
        self.clock = clock
        self.auditInterval = auditInterval
        self.maxKeys = maxKeys
    }

    /// Takes one request's worth from `key`'s bucket.
    public func take(_ key: String) -> RateDecision {
        guard !limit.isOff else { return .allowed }
        let now = clock.now
        let capacity = Double(limit.burst)
        return buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: capacity, updated: now)
            // A clock stepping backwards refills nothing rather than draining the bucket.
            let elapsed = max(0, now.timeIntervalSince(bucket.updated))
            bucket.tokens = min(capacity, bucket.tokens + elapsed * limit.perSecond)
            bucket.updated = now
            let decision: RateDecision
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                decision = .allowed
            } else {
                let wait = (1 - bucket.tokens) / limit.perSecond
                let audit =
                    bucket.lastAuditedRefusal.map {
                        now.timeIntervalSince($0) >= auditInterval.timeInterval || $0 > now
                    } ?? true
                if audit { bucket.lastAuditedRefusal = now }
                decision = .limited(retryAfter: .milliseconds(Int64((wait * 1000).rounded(.up))), audit: audit)
            }
            buckets[key] = bucket
            if buckets.count > maxKeys { evict(&buckets, now: now) }
            return decision
        }
    }

    /// Number of keys tracked (for tests and metrics).
    public var trackedKeys: Int { buckets.withLock { $0.count } }

    private func evict(_ buckets: inout [String: Bucket], now: Date) {
        let capacity = Double(limit.burst)
        buckets = buckets.filter { _, bucket in
            bucket.tokens + max(0, now.timeIntervalSince(bucket.updated)) * limit.perSecond < capacity
        }
        if buckets.count > maxKeys / 2 {
            let newest = buckets.sorted { $0.value.updated > $1.value.updated }.prefix(maxKeys / 2)
            buckets = Dictionary(uniqueKeysWithValues: newest.map { ($0.key, $0.value) })
        }
    }
}
