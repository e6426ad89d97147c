import Hummingbird
import NIOCore

/// Request context that keeps the connection's channel, to read the TLS client certificate (renewal by mTLS).
public struct SigilRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: (any Channel)?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// Bodies are read explicitly with the configured limit; this only bounds what Hummingbird would buffer.
    public var maxUploadSize: Int { 64 * 1024 }
}
