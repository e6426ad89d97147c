import Foundation
import SigilCore
import SigilCrypto
import Synchronization

/// Operator sessions of the trust console. `sigil admin console-login` (over the admin socket, so only operators
/// with access to it) mints a one-time login token; the console's login page exchanges it for a session cookie.
/// Only SHA-256 digests of tokens and session ids are held, in this process's memory: a restart ends every
/// session, and a login URL works on the replica that minted it.
final class ConsoleSessions: Sendable {
    /// How long a login token may wait for its exchange. At most 5 minutes.
    static let maxLoginLifetime: Duration = .seconds(300)
    /// How long a session lasts from login. 8 hours.
    static let sessionLifetime: Duration = .seconds(8 * 3600)
    /// Most login tokens and sessions held at once; the oldest go first.
    static let capacity = 1_000

    struct Session: Sendable, Equatable {
        /// Who minted the login: `admin:<uid>`.
        let actor: String
        let expiresAt: Date
    }

    private struct State {
        var logins: [String: (actor: String, expiresAt: Date)] = [:]
        var sessions: [String: Session] = [:]
    }

    private let clock: any WallClock
    private let state = Mutex(State())

    init(clock: any WallClock) { self.clock = clock }

    /// A new login token for `actor`, valid for `lifetime` (cut to `maxLoginLifetime`) and one exchange.
    func mintLogin(actor: String, lifetime: Duration) throws -> (token: String, expiresAt: Date) {
        let token = try Self.randomToken()
        let expiresAt = clock.now + min(lifetime, Self.maxLoginLifetime)
        state.withLock { state in
            Self.prune(&state.logins, now: clock.now) { $0.expiresAt }
            state.logins[Self.digest(token)] = (actor, expiresAt)
        }
        return (token, expiresAt)
    }

    /// Exchanges a login token for a session id: once, before the token expires.
    /// - Throws: `unauthenticated` for an unknown, used or expired token.
    func redeem(_ token: String) throws -> (id: String, session: Session) {
        let now = clock.now
        let login = state.withLock { $0.logins.removeValue(forKey: Self.digest(token)) }
        guard let login, now < login.expiresAt else {
            throw CAError(.unauthenticated, reason: "console login token unknown, used or expired")
        }
        let id = try Self.randomToken()
        let session = Session(actor: login.actor, expiresAt: now + Self.sessionLifetime)
        state.withLock { state in
            Self.prune(&state.sessions, now: now) { $0.expiresAt }
            state.sessions[Self.digest(id)] = session
        }
        return (id, session)
    }

    /// The live session of `id` (a cookie's value), nil when unknown or expired.
    func session(_ id: String?) -> Session? {
        guard let id else { return nil }
        let now = clock.now
        return state.withLock { state in
            let key = Self.digest(id)
            guard let session = state.sessions[key] else { return nil }
            guard now < session.expiresAt else {
                state.sessions.removeValue(forKey: key)
                return nil
            }
            return session
        }
    }

    /// Ends the session of `id`; returns it if it was live.
    func end(_ id: String?) -> Session? {
        guard let id else { return nil }
        let now = clock.now
        let ended = state.withLock { $0.sessions.removeValue(forKey: Self.digest(id)) }
        return ended.flatMap { now < $0.expiresAt ? $0 : nil }
    }

    private static func digest(_ value: String) -> String { hexString(Digest.sha256(Array(value.utf8))) }

    /// 32 random bytes, base64url without padding.
    private static func randomToken() throws -> String {
        Data(try SecureRandom.bytes(32)).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// Drops expired entries, then the soonest to expire while over capacity.
    private static func prune<Value>(_ entries: inout [String: Value], now: Date, expiry: (Value) -> Date) {
        entries = entries.filter { now < expiry($0.value) }
        let excess = entries.count - capacity + 1
        if excess > 0 {
            for (key, _) in entries.sorted(by: { expiry($0.value) < expiry($1.value) }).prefix(excess) {
                entries.removeValue(forKey: key)
            }
        }
    }
}
