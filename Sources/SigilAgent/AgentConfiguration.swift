import Foundation
import SigilCrypto

/// What `sigil agent` does.
public struct AgentConfiguration: Sendable {
    /// Base URL of a Sigil server, e.g. `https://127.0.0.1:8443`.
    public var serverURL: String
    /// Projected service-account token file, re-read on every attempt (kubelet rotates it).
    public var tokenFile: String
    /// Where `svid.pem`, `svid.key` and `bundle.pem` are written; nil to keep them in memory (for `AgentSocket`).
    public var outputDirectory: String?
    /// Trust bundle used to authenticate the server (distributed out of band); the current bundle from the
    /// server is trusted in addition once received.
    public var caBundle: String
    /// Exit after the first successful write (init-container mode). Default false.
    public var once: Bool
    /// Key type of the workload key. Default EC P-256.
    public var keyAlgorithm: KeyAlgorithm
    public var schedule: RenewalSchedule
    /// How often `/v1/authorities` is polled for taint and bundle changes. Default 10 s.
    public var pollInterval: Duration
    /// Shell command run after each successful write (e.g. to make a proxy reload).
    public var onRotate: String?
    /// With `once`: give up after this long. Default 30 s.
    public var onceTimeout: Duration

    public init(
        serverURL: String, tokenFile: String, outputDirectory: String?, caBundle: String, once: Bool = false,
        keyAlgorithm: KeyAlgorithm = .p256, schedule: RenewalSchedule = RenewalSchedule(),
        pollInterval: Duration = .seconds(10),
        onRotate: String? = nil, onceTimeout: Duration = .seconds(30)
    ) {
        self.serverURL = serverURL.hasSuffix("/") ? String(serverURL.dropLast()) : serverURL
        self.tokenFile = tokenFile
        self.outputDirectory = outputDirectory
        self.caBundle = caBundle
        self.once = once
        self.keyAlgorithm = keyAlgorithm
        self.schedule = schedule
        self.pollInterval = pollInterval
        self.onRotate = onRotate
        self.onceTimeout = onceTimeout
    }

    public static let certificateName = "svid.pem"
    public static let keyName = "svid.key"
    public static let bundleName = "bundle.pem"

}
