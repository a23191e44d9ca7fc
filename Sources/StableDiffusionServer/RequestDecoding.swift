import Foundation

/// The endpoints whose bodies clients control, decoded as their handlers decode them but without
/// running a job: the fuzz targets (`FuzzTargets`) drive the server's parsing through this.
package enum RequestEndpoint: CaseIterable, Sendable {
    case a1111Txt2Img, a1111Img2Img, openAIGenerations, openAIEdits
}

extension StableDiffusionServer {
    /// Decodes and validates `body` (pictures included) as `endpoint` would; throws the error the client would get.
    package func decodeRequest(_ endpoint: RequestEndpoint, body: [UInt8], contentType: String?) throws {
        switch endpoint {
        case .a1111Txt2Img: _ = try decodeTxt2Img(body)
        case .a1111Img2Img: _ = try decodeImg2Img(body)
        case .openAIGenerations: _ = try decodeGenerations(body)
        case .openAIEdits: _ = try decodeEdits(body, contentType: contentType)
        }
    }
}
