import Foundation
import StableDiffusion

/// What `sd serve` was started with. Defaults are the safe ones: loopback only, no CORS, no auth.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port (tests); the bound port is reported by `StableDiffusionServer.onStarted`.
    public var port = 7860
    /// "user:password" for HTTP Basic on every endpoint; nil: no authentication.
    public var apiAuth: String?
    /// Jobs that may wait behind the running one; more are refused with 503.
    public var queueSize = 16
    /// The one origin allowed by CORS; nil: no CORS headers at all.
    public var corsAllowOrigin: String?
    /// Largest request body accepted (base64 images included); more is refused with 413.
    public var maxBodyBytes = 64 << 20
    /// Generation limits, checked before a job is queued.
    public var limits = RequestLimits()
    /// Seconds a picture served with OpenAI's `response_format=url` stays downloadable.
    public var fileLifetimeSeconds: Double = 600
    /// How long slow or silent clients may hold a connection (slowloris), and how many may be open at once.
    public var connections = ConnectionLimits()
    /// `--preview-vae`: a (tiny) autoencoder whose decode of the running job's latents is the live preview,
    /// every `previewEvery` steps (and at the last); nil: the cheap linear preview (`LatentPreview.image`).
    public var previewVAE: (any LatentAutoencoder)?
    public var previewEvery = 1

    public init() {}
}

/// Bounds on what one request may ask for (each breach is a 422 naming the field).
public struct RequestLimits: Sendable {
    public var maxSide = 2048
    public var maxSteps = 150
    /// Pictures per request (batch_size x n_iter, or OpenAI's n).
    public var maxImages = 8
    /// Decoded input images larger than this on a side are refused before decoding.
    public var maxInputSide = 4096

    public init() {}
}

/// Bounds on what a client's connection may hold. The timeouts are about waiting for the client, never
/// about the server's answer: a request whose job runs for minutes is not timed out.
public struct ConnectionLimits: Sendable {
    /// Seconds from opening a connection (or from the first byte of a later request on it) to the end of
    /// the request's header. A partial header then gets 408; a connection that sent nothing is closed.
    public var headerTimeout: Double = 30
    /// Seconds allowed between two reads of a request body (nginx's client_body_timeout): a stalled body
    /// gets 408. A slow but steady upload is not cut off.
    public var bodyTimeout: Double = 60
    /// Seconds a keep-alive connection may wait, after an answer, for the next request to begin.
    public var idleTimeout: Double = 60
    /// Connections open at once; more are answered 503 and closed at once (well under the usual soft
    /// limit of 1,024 open files).
    public var maxConnections = 512

    public init() {}
}
