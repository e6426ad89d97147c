import Foundation
import Logging
import ServiceLifecycle
import SigilCore
import SigilCrypto
import SigilServer
import SigilFiles
import SigilStore
import SigilTokens
import SigilTestSupport
import Testing

@testable import SigilAgent

/// The agent's renewal loop end to end: a real `sigil serve` stack (SQLite store, HTTPS on 127.0.0.1) in this
/// process, and the agent, both on one ManualClock. Time moves only when the test moves it, once both are
/// asleep on the clock; the agent's random generator is seeded, so the test computes the exact renewal and
/// retry times the agent must choose.
@Suite("Agent renewal loop")
struct AgentLoopTests {
    static let seed: UInt64 = 0x5EED
    static let identity = WorkloadIdentity(namespace: "default", serviceAccount: "web")
    static let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
    /// Services of `buildServer` that sleep on the clock between passes.
    static let serverSleepers = 3

    /// The serial, validity and key of the SVID on disk, read through `..data` as one set.
    struct OnDisk: Equatable {
        let serial: String
        let notBefore: Date
        let notAfter: Date
        let key: Data
    }

    static func onDisk(_ directory: String) throws -> OnDisk {
        let chain = try #require(AtomicFileSet.read("svid.pem", in: directory))
        let key = try #require(AtomicFileSet.read("svid.key", in: directory))
        let leaf = try #require(try Certificate.parseChain(pem: String(decoding: chain, as: UTF8.self)).first)
        let privateKey = try PrivateKey(pem: String(decoding: key, as: UTF8.self))
        #expect(try privateKey.publicKey().der == leaf.publicKey.der, "svid.key does not belong to svid.pem")
        return OnDisk(serial: leaf.serial.hex, notBefore: leaf.notBefore, notAfter: leaf.notAfter, key: key)
    }

    @Test(
        "renews at the seeded half-life point and not a second before; keeps the SVID and backs off while it cannot renew"
    )
    func renewalLoop() async throws {
        let directory = try TemporaryDirectory()
        let dataDirectory = directory.file("data")
        let out = directory.file("out")
        let tokenFile = directory.file("token")
        // Real time at the start: the agent's TLS stack checks the server's certificate against the system clock.
        let clock = ManualClock(now: Date())

        var configuration = ServerConfiguration(
            dataDirectory: dataDirectory, port: 0,
            authority: AuthorityConfiguration(trustDomain: try TrustDomain("cluster.local")))
        configuration.adminSocket = nil
        let (ports, portSink) = AsyncStream.makeStream(of: Int.self)
        let server = try await buildServer(configuration: configuration, clock: clock, logger: Self.quiet) { port in
            portSink.yield(port)
        }
        let serverTask = Task {
            try await ServiceGroup(services: server.services, logger: Self.quiet).run()
        }
        defer { serverTask.cancel() }
        var portIterator = ports.makeAsyncIterator()
        let port = try #require(await portIterator.next())
        // The server's three sleepers: the rotation service (after writing bundle.pem), the JWKS refresh and the
        // denial summary.
        try await clock.waitForSleepers(count: Self.serverSleepers)

        let issuer = try LocalTokenIssuer.load(dataDirectory: dataDirectory, create: false)
        let token = try await issuer.mint(
            identity: Self.identity, audience: "sigil", ttl: .seconds(86_400), now: clock.now)
        try SecureFile.write(Data(token.utf8), to: tokenFile)

        let schedule = RenewalSchedule()
        let agentConfiguration = AgentConfiguration(
            serverURL: "https://127.0.0.1:\(port)", tokenFile: tokenFile, outputDirectory: out,
            caBundle: dataDirectory + "/bundle.pem", schedule: schedule)
        let agent = AgentService(
            configuration: agentConfiguration, clock: clock, logger: Self.quiet,
            random: SeededGenerator(state: Self.seed))
        let agentTask = Task { try await agent.run() }
        defer { agentTask.cancel() }
        var expected = SeededGenerator(state: Self.seed)

        // First SVID, then the agent polls and sleeps until min(renewal, next poll).
        try await clock.waitForSleepers(count: Self.serverSleepers + 1)
        let first = try Self.onDisk(out)
        let renewAt = schedule.renewAt(notBefore: first.notBefore, notAfter: first.notAfter, using: &expected)
        #expect(renewAt > clock.now && renewAt < first.notAfter)

        clock.set(renewAt - .seconds(1))
        try await clock.waitForSleepers(count: Self.serverSleepers + 1)
        #expect(try Self.onDisk(out) == first, "renewed before the scheduled time")

        clock.set(renewAt)
        try await clock.waitForSleepers(count: Self.serverSleepers + 1)
        let second = try Self.onDisk(out)
        #expect(
            second.serial != first.serial && second.key != first.key,
            "no renewal (with a fresh key) at the scheduled time")
        #expect(
            abs(second.notBefore.timeIntervalSince(renewAt)) < 120, "the new SVID starts at the server's (manual) time")

        // The token vanishes: the renewal fails, the current SVID stays, the retry comes after the seeded backoff.
        let secondRenewAt = schedule.renewAt(notBefore: second.notBefore, notAfter: second.notAfter, using: &expected)
        try FileManager.default.removeItem(atPath: tokenFile)
        clock.set(secondRenewAt)
        try await clock.waitForSleepers(count: Self.serverSleepers + 1)
        #expect(try Self.onDisk(out) == second, "a failed renewal touched the current SVID")
        let backoff = schedule.backoff(attempt: 0, now: secondRenewAt, deadline: second.notAfter, using: &expected)

        try SecureFile.write(Data(token.utf8), to: tokenFile)
        clock.set(secondRenewAt + backoff - .milliseconds(1))
        try await clock.waitForSleepers(count: Self.serverSleepers + 1)
        #expect(try Self.onDisk(out) == second, "retried before the backoff elapsed")
        clock.set(secondRenewAt + backoff)
        try await clock.waitForSleepers(count: Self.serverSleepers + 1)
        let third = try Self.onDisk(out)
        #expect(third.serial != second.serial, "no retry after the backoff")

        agentTask.cancel()
        _ = await agentTask.result
        serverTask.cancel()
        _ = await serverTask.result
    }
}
