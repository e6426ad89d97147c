import Foundation
import Logging
import ServiceLifecycle
import SigilAPIModels
import SigilCore
import SigilCrypto
import SigilFiles
import Synchronization

/// The workload side: obtains an SVID, publishes it to the socket's streams (`feed`) and/or writes key, chain
/// and bundle as one atomic set (`AtomicFileSet`), renews it at half-life ± jitter, retries with capped
/// exponential backoff while keeping the current certificate, renews at once when its chain is tainted, and keeps
/// the bundle current.
public final class AgentService: Service, Sendable {
    let configuration: AgentConfiguration
    let clock: any WallClock
    let logger: Logger
    let client: SigilClient
    let random: LockedRandom
    /// The current SVID for the socket's Workload API and SDS streams.
    public let feed: SVIDFeed

    /// The SVID held now.
    public struct Held: Sendable {
        let notBefore: Date
        let notAfter: Date
        let authorityKeyID: String
        let serial: String
    }

    public init(
        configuration: AgentConfiguration, clock: any WallClock, logger: Logger,
        random: some RandomNumberGenerator & Sendable = SystemRandomNumberGenerator()
    ) {
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
        let feed = SVIDFeed()
        self.feed = feed
        // The bundle last received: in memory, or (after a restart with --out-dir) the one written last time.
        let written = configuration.outputDirectory.map { $0 + "/" + AgentConfiguration.bundleName }
        self.client = SigilClient(configuration: configuration, logger: logger) {
            feed.current?.bundlePEM
                ?? written.flatMap { FileManager.default.contents(atPath: $0) }.map {
                    String(decoding: $0, as: UTF8.self)
                }
        }
        self.random = LockedRandom(random)
    }

    /// Obtains and publishes the first SVID, retrying with backoff; with `once`, gives up after `onceTimeout`.
    @discardableResult
    public func fetchFirst() async throws -> Held {
        let giveUp = clock.now + configuration.onceTimeout
        var attempt = 0
        while true {
            do {
                // With --once no single attempt may run past the deadline.
                let left = configuration.once ? giveUp.timeIntervalSince(clock.now) : 15
                return try await renew(timeout: .milliseconds(Int64(max(min(left, 15), 0.1) * 1000)))
            } catch {
                let now = clock.now
                if configuration.once && now >= giveUp {
                    throw AgentError(
                        "unavailable", "no certificate after \(configuration.onceTimeout.humanReadable): \(error)")
                }
                var delay = random.with {
                    configuration.schedule.backoff(attempt: attempt, now: now, deadline: nil, using: &$0)
                }
                if configuration.once {
                    delay = min(delay, .milliseconds(Int64(max(giveUp.timeIntervalSince(now), 0) * 1000)))
                }
                logger.warning(
                    "obtaining the first certificate failed; retrying",
                    metadata: ["sigil.reason": "\(error)", "sigil.retry_in": "\(delay)"])
                attempt += 1
                try await clock.sleep(until: now + delay)
            }
        }
    }

    /// Ends the socket's streams; call once the agent is done.
    public func shutdown() async {
        feed.close()
    }

    public func run() async throws {
        do {
            try await loop()
        } catch {
            await shutdown()
            throw error
        }
        await shutdown()
    }

    private func loop() async throws {
        var held = try await cancelWhenGracefulShutdown { try await self.fetchFirst() }
        if configuration.once { return }
        var renewAt = scheduleRenewal(held)
        var nextPoll = clock.now
        var etag: String? = nil
        var bundleSequence: Int64? = nil
        var anyRevoked = false
        var crlsDue: Date? = nil
        var attempt = 0
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let wake = min(renewAt, nextPoll)
            do {
                try await cancelWhenGracefulShutdown { try await self.clock.sleep(until: wake) }
            } catch {
                return
            }
            let now = clock.now
            if now >= nextPoll {
                nextPoll = now + configuration.pollInterval
                do {
                    let (authorities, tag) = try await client.authorities(etag: etag)
                    etag = tag
                    if let authorities {
                        if let reason = Self.taint(of: held, in: authorities) {
                            // Renew soon but not all at once: a fleet reacting to one taint spreads over a few seconds.
                            let delay = random.with {
                                Double.random(in: 0...min(2.0, configuration.pollInterval.timeInterval / 2), using: &$0)
                            }
                            renewAt = min(renewAt, now.addingTimeInterval(delay))
                            feed.withhold()
                            logger.warning(
                                "current certificate chains to a \(reason) authority; renewing now",
                                metadata: ["sigil.serial": "\(held.serial)"])
                        }
                        if bundleSequence != authorities.bundleSequence {
                            if bundleSequence != nil { try replaceBundle(try await client.bundlePEM()) }
                            bundleSequence = authorities.bundleSequence
                        }
                        anyRevoked = authorities.authorities.contains { $0.state == "revoked" }
                    }
                    // When the authorities change, and before the held CRLs' nextUpdate: not on every poll.
                    if authorities != nil || crlsDue.map({ now >= $0 }) == true {
                        crlsDue = try await refreshCRLs(revoked: anyRevoked)
                    }
                } catch {
                    logger.warning("polling authorities failed", metadata: ["sigil.reason": "\(error)"])
                }
            }
            if clock.now >= renewAt {
                do {
                    held = try await renew()
                    renewAt = scheduleRenewal(held)
                    attempt = 0
                } catch {
                    let now = clock.now
                    let delay = random.with {
                        configuration.schedule.backoff(attempt: attempt, now: now, deadline: held.notAfter, using: &$0)
                    }
                    attempt += 1
                    renewAt = now + delay
                    let left = held.notAfter.timeIntervalSince(now)
                    logger.error(
                        "renewal failed; keeping the current certificate",
                        metadata: [
                            "sigil.reason": "\(error)", "sigil.seconds_left": "\(Int(left))",
                            "sigil.retry_in": "\(delay)",
                        ])
                }
            }
        }
    }

    private func scheduleRenewal(_ held: Held) -> Date {
        let at = random.with {
            configuration.schedule.renewAt(notBefore: held.notBefore, notAfter: held.notAfter, using: &$0)
        }
        logger.info("next renewal", metadata: ["sigil.serial": "\(held.serial)", "sigil.renew_at": "\(at)"])
        return at
    }

    /// Generates a key, requests a certificate with the current token, publishes it.
    @discardableResult
    func renew(timeout: Duration = .seconds(15)) async throws -> Held {
        guard let tokenData = FileManager.default.contents(atPath: configuration.tokenFile) else {
            throw AgentError("token_unreadable", "cannot read token file \(configuration.tokenFile)")
        }
        let token = String(decoding: tokenData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let key = try PrivateKey.generate(configuration.keyAlgorithm)
        let csr = try CertificateSigningRequest.create(key: key, subjectAlternativeNames: [])
        let issued = try await client.requestCertificate(csrPEM: try csr.pem, token: token, timeout: timeout)
        let chain = try issued.chain.flatMap { try Certificate.parseChain(pem: $0) }
        guard let leaf = chain.first, leaf.publicKey.der == (try key.publicKey().der) else {
            throw AgentError("bad_response", "issued certificate does not carry this agent's key")
        }
        let bundle = try issued.trustBundle.flatMap { try Certificate.parseChain(pem: $0) }
        let material = try SVIDMaterial(
            chain: chain, key: key, bundle: bundle, spiffeID: issued.spiffeID, crlDER: feed.current?.crlDER ?? [])
        try publish(material)
        logger.notice(
            configuration.outputDirectory == nil ? "obtained SVID" : "wrote SVID",
            metadata: [
                "sigil.identity": "\(issued.spiffeID)", "sigil.serial": "\(issued.serial)",
                "sigil.not_after": "\(issued.notAfter)",
            ])
        await runOnRotate()
        return Held(
            notBefore: leaf.notBefore, notAfter: leaf.notAfter,
            authorityKeyID: hexString(leaf.authorityKeyIdentifier ?? []),
            serial: leaf.serial.hex)
    }

    /// Writes the key, chain and bundle as one set (a reader never sees a chain with another chain's key, or a
    /// chain next to a bundle it does not verify against), then pushes them to the socket's streams.
    private func publish(_ material: SVIDMaterial) throws {
        if let directory = configuration.outputDirectory {
            try SecureFile.ensurePrivateDirectory(directory)
            try AtomicFileSet.publish(
                [
                    .init(name: AgentConfiguration.keyName, contents: Data(material.keyPEM.utf8), mode: 0o600),
                    .init(
                        name: AgentConfiguration.certificateName, contents: Data(material.chainPEM.utf8), mode: 0o644),
                    .init(name: AgentConfiguration.bundleName, contents: Data(material.bundlePEM.utf8), mode: 0o644),
                ], in: directory, at: clock.now)
        }
        feed.publish(material)
    }

    /// Republishes the current SVID with the server's CRLs while an authority is revoked (the Workload API
    /// serves them beside the bundle), and without once none is.
    /// Returns when to fetch them again: one poll before the earliest nextUpdate, nil when none is held.
    private func refreshCRLs(revoked: Bool) async throws -> Date? {
        guard let current = feed.current, revoked || !current.crlDER.isEmpty else { return nil }
        let crls = revoked ? try await client.crls() : []
        if crls != current.crlDER {
            feed.publish(current.replacing(crlDER: crls))
            logger.notice("revocation lists changed", metadata: ["sigil.crls": "\(crls.count)"])
        }
        return crls.compactMap { try? CertificateRevocationList(der: $0).nextUpdate }.min()
            .map { $0 - configuration.pollInterval }
    }

    /// Republishes the current SVID with a new bundle when the bundle changed.
    private func replaceBundle(_ pem: String) throws {
        guard let current = feed.current else { return }
        let bundle = try Certificate.parseChain(pem: pem)
        if bundle.map(\.der) == current.bundleDER { return }
        try publish(current.replacing(bundle: bundle))
        logger.notice("trust bundle changed", metadata: ["sigil.roots": "\(bundle.count)"])
    }

    /// "tainted"/"revoked" if the held certificate's issuer or that issuer's root is; nil otherwise.
    static func taint(of held: Held, in authorities: AuthoritiesResponse) -> String? {
        guard
            let issuer = authorities.authorities.first(where: {
                $0.role == "intermediate" && $0.subjectKeyID == held.authorityKeyID
            })
        else {
            return nil
        }
        if issuer.state == "tainted" || issuer.state == "revoked" { return issuer.state }
        if let root = authorities.authorities.first(where: { $0.id == issuer.parentID }),
            root.state == "tainted" || root.state == "revoked"
        {
            return root.state
        }
        return nil
    }

    /// Runs `--on-rotate` and waits for it without holding a thread: the child's exit resumes this task
    /// (`Process.waitUntilExit` would block one of the few cooperative threads for as long as the command runs).
    private func runOnRotate() async {
        guard let command = configuration.onRotate else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        let status: Int32? = await withCheckedContinuation { continuation in
            process.terminationHandler = { finished in continuation.resume(returning: finished.terminationStatus) }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                logger.warning("--on-rotate command could not start", metadata: ["sigil.reason": "\(error)"])
                continuation.resume(returning: nil)
            }
        }
        if let status, status != 0 {
            logger.warning("--on-rotate command failed", metadata: ["sigil.exit": "\(status)"])
        }
    }
}

/// A random number generator behind a lock, so one injected generator serves the whole agent.
final class LockedRandom: Sendable {
    private let generator: Mutex<any RandomNumberGenerator & Sendable>
    init(_ generator: some RandomNumberGenerator & Sendable) { self.generator = Mutex(generator) }
    func with<T>(_ body: (inout any RandomNumberGenerator & Sendable) -> T) -> T {
        generator.withLock { body(&$0) }
    }
}
