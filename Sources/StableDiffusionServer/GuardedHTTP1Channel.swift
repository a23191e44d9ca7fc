import HummingbirdCore
import Logging
import NIOCore

/// Hummingbird's HTTP/1 channel with what slow clients need (issue 26): the read timeouts of
/// `ReadTimeoutHandler` on each connection, and the `--max-connections` cap (connections beyond it get
/// 503 and are closed). Hummingbird's own cap stops accepting instead, which leaves the excess waiting
/// in the listen queue, and its idle timeout cannot tell a header from a body from a keep-alive wait.
struct GuardedHTTP1Channel: ServerChildChannel {
    struct Value: ServerChildChannelValue {
        let channel: any Channel
        /// nil: a connection over the cap, refused.
        let http: HTTP1Channel.Value?
    }

    let http: HTTP1Channel
    let counter: ConnectionCounter

    init(responder: @escaping HTTPChannelHandler.Responder, limits: ConnectionLimits, metrics: ServerMetrics, logger: Logger) {
        http = HTTP1Channel(responder: responder, configuration: .init(additionalChannelHandlers: [
            ReadTimeoutHandler(limits: limits, metrics: metrics, logger: logger),
        ]))
        counter = ConnectionCounter(limit: limits.maxConnections, metrics: metrics, logger: logger)
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        guard counter.take() else {
            return channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(RefuseConnectionHandler())
                return Value(channel: channel, http: nil)
            }
        }
        let counter = self.counter
        channel.closeFuture.whenComplete { _ in counter.release() }
        return http.setup(channel: channel, logger: logger).flatMapThrowing { value in
            try channel.pipeline.syncOperations.addHandler(InboundBytesSignal(), position: .first)
            return Value(channel: channel, http: value)
        }
    }

    func handle(value: Value, logger: Logger) async {
        guard let connection = value.http else { return }
        await http.handle(value: connection, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// `.http1()` with `GuardedHTTP1Channel`'s timeouts and connection cap.
    static func guardedHTTP1(limits: ConnectionLimits, metrics: ServerMetrics, logger: Logger) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in GuardedHTTP1Channel(responder: responder, limits: limits, metrics: metrics, logger: logger) }
    }
}
