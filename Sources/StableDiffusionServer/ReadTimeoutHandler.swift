import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes

/// What a request body's reader gets when the client stopped sending it for `--body-timeout` seconds.
struct RequestReadTimeout: Error {}

/// Sent up the pipeline by `InboundBytesSignal` whenever bytes arrive: the first bytes of a request's
/// header make no HTTP part yet, and the header timeout of a keep-alive connection starts with them.
struct InboundBytesEvent: Sendable {}

/// First in a connection's pipeline, before the HTTP decoder: tells `ReadTimeoutHandler` the client sent something.
final class InboundBytesSignal: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireUserInboundEventTriggered(InboundBytesEvent())
        context.fireChannelRead(data)
    }
}

/// The header, body and keep-alive timeouts of one HTTP/1 connection. It sits after the HTTP codec, so it
/// sees request and response parts. Only the client is timed: while the server owes the answer to a request
/// it has read whole, no timer runs, however long the job takes.
///
/// - header: from the connection's start (or the first byte of a later request) to the end of the head;
///   a partial head then gets 408, a connection that sent nothing is closed silently.
/// - body: between two reads of the body; a stalled body gets 408 (and its reader `RequestReadTimeout`).
/// - idle: after an answer, until the next request begins; closed silently.
///
/// An answer that says `Connection: close` ends the connection: at once when its request was read whole,
/// else (an early 413) the output is closed and the rest of the body read and dropped, still timed, so the
/// client sees the answer instead of a reset.
final class ReadTimeoutHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// How far the latest request on the connection has been read.
    private enum Reading: Equatable {
        /// Nothing of the next request yet (`first`: nothing at all on this connection).
        case nothing(first: Bool)
        case head
        case body
        /// Read whole.
        case done
    }

    private let limits: ConnectionLimits
    private let metrics: ServerMetrics
    private let logger: Logger
    private var reading = Reading.nothing(first: true)
    /// Requests read (their heads) whose answer has not ended.
    private var owed = 0
    private var headStart = NIODeadline.now()
    private var lastBodyRead = NIODeadline.now()
    /// When the server last stopped owing the client (an answer ended): waits on the client count from here.
    private var waitingSince = NIODeadline.now()
    /// The request whose body is arriving has been answered already (e.g. an early 413).
    private var answeredEarly = false
    private var closeAfterAnswer = false
    private var finished = false
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?

    init(limits: ConnectionLimits, metrics: ServerMetrics, logger: Logger) {
        self.limits = limits
        self.metrics = metrics
        self.logger = logger
    }

    // MARK: Events

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimer()
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finished = true
        cancelTimer()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is InboundBytesEvent else { return context.fireUserInboundEventTriggered(event) }
        switch reading {
        case .nothing(first: true):
            reading = .head  // the first request's header is timed from the connection's start
        case .nothing(first: false), .done:
            reading = .head
            headStart = .now()
        case .head, .body:
            break
        }
        rearm(context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch part {
        case .head:
            owed += 1
            reading = .body
            lastBodyRead = .now()
            answeredEarly = false
        case .body:
            lastBodyRead = .now()
        case .end:
            if owed == 0 {
                reading = .nothing(first: false)  // answered before its body ended
                waitingSince = .now()
            } else {
                reading = .done
            }
        }
        context.fireChannelRead(data)
        if case .end = part, owed == 0, closeAfterAnswer {
            finish(context)
            return
        }
        rearm(context)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let response):
            if response.status.kind != .informational {
                if owed == 1, reading == .body { answeredEarly = true }
                if response.headerFields[.connection]?.lowercased() == "close" { closeAfterAnswer = true }
            }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            owed = max(0, owed - 1)
            waitingSince = .now()
            if owed == 0, reading == .done { reading = .nothing(first: false) }
            guard closeAfterAnswer, owed == 0 else {
                context.write(data, promise: promise)
                rearm(context)
                return
            }
            let written = promise ?? context.eventLoop.makePromise()
            context.write(data, promise: written)
            let bodyStillComing = reading == .body
            written.futureResult.assumeIsolated().whenComplete { _ in
                if bodyStillComing {
                    context.close(mode: .output, promise: nil)
                } else {
                    self.finish(context)
                }
            }
            rearm(context)
        }
    }

    // MARK: Timer

    private func start(_ context: ChannelHandlerContext) {
        headStart = .now()
        waitingSince = headStart
        rearm(context)
    }

    /// When the client's time runs out in the current state; nil while the server owes an answer to a
    /// request read whole (or to earlier ones, with a pipelined request behind them).
    private var deadline: NIODeadline? {
        switch reading {
        case .body where owed <= 1:
            return max(lastBodyRead, waitingSince) + Self.amount(limits.bodyTimeout)
        case _ where owed > 0:
            return nil
        case .nothing(first: true):
            return headStart + Self.amount(limits.headerTimeout)
        case .head:
            return max(headStart, waitingSince) + Self.amount(limits.headerTimeout)
        case .nothing(first: false), .done, .body:
            return waitingSince + Self.amount(limits.idleTimeout)
        }
    }

    /// Keeps one timer at or before the deadline; one that fires early looks again (body reads only move it later).
    private func rearm(_ context: ChannelHandlerContext) {
        guard !finished, let due = deadline else { return cancelTimer() }
        if let scheduled = timerDeadline, scheduled <= due { return }
        cancelTimer()
        timerDeadline = due
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: due) { self.fired(context) }
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
        timerDeadline = nil
    }

    private func fired(_ context: ChannelHandlerContext) {
        timer = nil
        timerDeadline = nil
        guard !finished, let due = deadline else { return }
        guard due <= .now() else { return rearm(context) }
        switch reading {
        case .nothing, .done:
            finish(context)
        case .head:
            metrics.request(status: 408)
            logger.info("request", metadata: ["status": "408", "timeout": "header", "seconds": "\(limits.headerTimeout)"])
            answer408(context)
        case .body:
            // The route reading the body learns why it ended (its log line says 408).
            context.fireErrorCaught(RequestReadTimeout())
            if answeredEarly { finish(context) } else { answer408(context) }
        }
    }

    private func answer408(_ context: ChannelHandlerContext) {
        finished = true
        let head = HTTPResponse(status: .requestTimeout, headerFields: [.connection: "close", .contentLength: "0"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    private func finish(_ context: ChannelHandlerContext) {
        finished = true
        cancelTimer()
        context.close(promise: nil)
    }

    private static func amount(_ seconds: Double) -> TimeAmount { .nanoseconds(Int64(seconds * 1e9)) }
}
