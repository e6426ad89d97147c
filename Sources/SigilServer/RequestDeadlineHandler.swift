import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes

/// Closes connections that deliver requests too slowly (slowloris).
///
/// Hummingbird's idle timeout only runs while no request is in progress, and every body chunk counts as
/// activity, so a client trickling a body one byte at a time would hold a connection (and a task) forever.
/// This handler arms a deadline when the connection opens (TLS handshake and first request head) and again at
/// each request head (its body); the request's end disarms it. Keep-alive gaps between requests are left to
/// the idle timeout, which also bounds a head sent slowly on a reused connection.
final class RequestDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let timeout: TimeAmount
    private let logger: Logger
    private var deadline: Scheduled<Void>?

    init(timeout: Duration, logger: Logger) {
        self.timeout = TimeAmount(timeout)
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) { arm(context) }
    func handlerRemoved(context: ChannelHandlerContext) { disarm() }
    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: arm(context)
        case .body: break
        case .end: disarm()
        }
        context.fireChannelRead(data)
    }

    private func arm(_ context: ChannelHandlerContext) {
        disarm()
        let loop = context.eventLoop.assumeIsolatedUnsafeUnchecked()
        let logger = logger
        deadline = loop.scheduleTask(in: timeout) {
            logger.debug("closing a connection whose request did not arrive in time")
            context.close(promise: nil)
        }
    }

    private func disarm() {
        deadline?.cancel()
        deadline = nil
    }
}
