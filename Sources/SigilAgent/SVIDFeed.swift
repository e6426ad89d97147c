import Foundation
import SigilCrypto
import Synchronization

/// One SVID with its key and the trust bundle it verifies against, as the agent's socket serves it.
public struct SVIDMaterial: Sendable, Equatable {
    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
    public let spiffeID: String
    /// `spiffe://<trust-domain>`: the key of the Workload API's bundle map and SPIRE's SDS name for the bundle.
    public let trustDomainID: String
    /// Leaf first, then the intermediates.
    public let chainDER: [[UInt8]]
    public let chainPEM: String
    public let keyDER: [UInt8]
    public let keyPEM: String
    /// The roots of the trust bundle.
    public let bundleDER: [[UInt8]]
    public let bundlePEM: String
    /// DER CRLs of the trust domain's authorities, served while one of its intermediates is revoked.
    public let crlDER: [[UInt8]]
    public let serial: String
    /// Grows with every publication; SDS sends it as `version_info`.
    public internal(set) var version: Int = 0

    public init(
        chain: [Certificate], key: PrivateKey, bundle: [Certificate], spiffeID: String, crlDER: [[UInt8]] = []
    ) throws {
        self.spiffeID = spiffeID
        trustDomainID = Self.trustDomainID(of: spiffeID)
        chainDER = chain.map(\.der)
        chainPEM = chain.map(\.pem).joined()
        keyDER = try key.pkcs8DER()
        keyPEM = try key.pkcs8PEM()
        bundleDER = bundle.map(\.der)
        bundlePEM = bundle.map(\.pem).joined()
        self.crlDER = crlDER
        serial = chain.first?.serial.hex ?? ""
    }

    /// The same SVID with another trust bundle or other CRLs.
    func replacing(bundle: [Certificate]? = nil, crlDER: [[UInt8]]? = nil) -> SVIDMaterial {
        SVIDMaterial(
            self, bundleDER: bundle.map { $0.map(\.der) } ?? bundleDER,
            bundlePEM: bundle.map { $0.map(\.pem).joined() } ?? bundlePEM, crlDER: crlDER ?? self.crlDER)
    }

    private init(_ other: SVIDMaterial, bundleDER: [[UInt8]], bundlePEM: String, crlDER: [[UInt8]]) {
        spiffeID = other.spiffeID
        trustDomainID = other.trustDomainID
        chainDER = other.chainDER
        chainPEM = other.chainPEM
        keyDER = other.keyDER
        keyPEM = other.keyPEM
        self.bundleDER = bundleDER
        self.bundlePEM = bundlePEM
        self.crlDER = crlDER
        serial = other.serial
        version = other.version
    }

    static func trustDomainID(of spiffeID: String) -> String {
        let rest = spiffeID.dropFirst("spiffe://".count)
        return "spiffe://" + (rest.split(separator: "/", maxSplits: 1).first.map(String.init) ?? "")
    }
}

/// The agent's current SVID, pushed to every open Workload API and SDS stream: a subscriber gets the current
/// material at once (if any) and then every newer one; a slow subscriber skips to the newest.
public final class SVIDFeed: Sendable {
    private struct State {
        var current: SVIDMaterial?
        /// After a taint the current SVID is not served to anyone new until its replacement is published.
        var withheld = false
        var subscribers: [Int: AsyncStream<SVIDMaterial>.Continuation] = [:]
        var nextID = 0
        var version = 0
        var closed = false
    }

    private let state = Mutex(State())

    public init() {}

    /// The material last published, withheld or not (the agent rewrites its bundle from it).
    public var current: SVIDMaterial? { state.withLock { $0.current } }

    /// The material a new caller may have: the current one unless it is withheld.
    public var servable: SVIDMaterial? { state.withLock { $0.withheld ? nil : $0.current } }

    /// How many streams are open now.
    public var subscriberCount: Int { state.withLock { $0.subscribers.count } }

    /// Makes `material` current and pushes it to every subscriber, unless it is the withheld SVID with a new
    /// bundle or CRLs: that one waits for its successor too. Returns the version it was given.
    @discardableResult
    public func publish(_ material: SVIDMaterial) -> Int {
        state.withLock { state in
            state.version += 1
            var material = material
            material.version = state.version
            if state.withheld && material.serial == state.current?.serial {
                state.current = material
                return state.version
            }
            state.current = material
            state.withheld = false
            for continuation in state.subscribers.values { continuation.yield(material) }
            return state.version
        }
    }

    /// Stops serving the current SVID to new subscribers (its chain is tainted) until the next `publish`.
    public func withhold() { state.withLock { $0.withheld = true } }

    /// Ends every stream; later subscriptions end at once.
    public func close() {
        let continuations = state.withLock { state in
            state.closed = true
            defer { state.subscribers = [:] }
            return Array(state.subscribers.values)
        }
        for continuation in continuations { continuation.finish() }
    }

    /// The current material (unless withheld) and then every newer one, until the feed closes or the consuming
    /// task is cancelled.
    public func subscribe() -> AsyncStream<SVIDMaterial> {
        let (stream, continuation) = AsyncStream.makeStream(of: SVIDMaterial.self, bufferingPolicy: .bufferingNewest(1))
        let id: Int? = state.withLock { state in
            if state.closed { return nil }
            let id = state.nextID
            state.nextID += 1
            state.subscribers[id] = continuation
            if let current = state.current, !state.withheld { continuation.yield(current) }
            return id
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }
}
