import Hummingbird
import NIOCore

/// Request context that keeps the connection's channel, to read the TLS client certificate (renewal by mTLS).
public struct SigilRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: (any Channel)?
    /// Hummingbird's request id (from the request logger's metadata), read once. Hummingbird's own
    /// `context.id` force-unwraps that metadata and so traps under a log handler that does not keep metadata;
    /// such a handler gets a fresh id here instead.
    let requestID: String

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
        requestID = source.logger[metadataKey: "hb.request.id"]?.description ?? RequestID().description
    }

    /// Bodies are read explicitly with the configured limit; this only bounds what Hummingbird would buffer.
    public var maxUploadSize: Int { 64 * 1024 }
}
