import Foundation
import Logging
import NIOCore

/// Counts open connections against `--max-connections`. Connections are set up on several event loops, hence the lock.
final class ConnectionCounter: @unchecked Sendable {
    let limit: Int
    private let metrics: ServerMetrics
    private let logger: Logger
    private let lock = NSLock()
    private var open = 0
    private var lastWarning: Date?

    init(limit: Int, metrics: ServerMetrics, logger: Logger) {
        self.limit = limit
        self.metrics = metrics
        self.logger = logger
    }

    /// Takes a place for a new connection; false when all are taken (the refusal is counted, and logged
    /// at most every 10 s: a flood of them must not flood the log too).
    func take() -> Bool {
        let (taken, count, warn): (Bool, Int, Bool) = lock.withLock {
            guard open < limit else {
                let now = Date()
                let warn = lastWarning.map { now.timeIntervalSince($0) >= 10 } ?? true
                if warn { lastWarning = now }
                return (false, open, warn)
            }
            open += 1
            return (true, open, false)
        }
        metrics.openConnections.set(Double(count))
        if !taken {
            metrics.refusedConnections.increment()
            if warn { logger.warning("connection refused: --max-connections reached", metadata: ["max_connections": "\(limit)"]) }
        }
        return taken
    }

    func release() {
        let count = lock.withLock {
            open -= 1
            return open
        }
        metrics.openConnections.set(Double(count))
    }
}

/// What a connection over the cap gets: a 503 and an immediate close. Accepting and closing keeps the
/// listen queue drained and holds no file descriptor (lingering until the client closes would let a flood
/// of them hold thousands). Whatever it sent is dropped.
final class RefuseConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private static let answer = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
        + "Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections\n"
    private var answered = false

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { refuse(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        refuse(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    private func refuse(_ context: ChannelHandlerContext) {
        guard !answered else { return }
        answered = true
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: Self.answer))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}
