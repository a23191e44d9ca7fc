import Foundation
import Logging
import StableDiffusionServer

/// Byte 0 picks the endpoint (low 2 bits) and the served tiny model's kind (next 2 bits: standard,
/// inpainting, depth, upscaler), which route img2img differently. For the multipart endpoint the
/// Content-Type header is the text up to the first newline; the rest is the body.
enum ServerRequestTarget {
    static let modelNames = ["tiny-sd1", "tiny-sd-inpainting", "tiny-sd2-depth", "tiny-sd-x4-upscaler"]
    nonisolated(unsafe) private static var servers: [Int: StableDiffusionServer] = [:]

    static func server(_ kind: Int) throws -> StableDiffusionServer {
        if let s = servers[kind] { return s }
        let model = try ServedModel.load(model: TinyModels.url(modelNames[kind]).path)
        var logger = Logger(label: "sd-fuzz")
        logger.logLevel = .critical
        let s = StableDiffusionServer(model: model, configuration: ServerConfiguration(), logger: logger)
        servers[kind] = s
        return s
    }

    static func run(_ data: [UInt8]) throws {
        guard let selector = data.first else { return }
        let endpoint = RequestEndpoint.allCases[Int(selector) & 3]
        let server = try server(Int(selector >> 2) & 3)
        var body = Array(data.dropFirst())
        var contentType: String?
        if endpoint == .openAIEdits {
            let line = body.firstIndex(of: UInt8(ascii: "\n")) ?? body.count
            contentType = String(decoding: body[..<line], as: UTF8.self)
            body = Array(body[min(line + 1, body.count)...])
        }
        try server.decodeRequest(endpoint, body: body, contentType: contentType)
    }
}
