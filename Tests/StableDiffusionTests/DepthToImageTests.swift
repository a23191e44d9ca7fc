import Foundation
import XCTest
import StableDiffusion

/// Parity with diffusers' StableDiffusionDepth2ImgPipeline on a tiny SD 2-style 5-channel model with a
/// tiny hybrid DPT depth estimator.
final class DepthToImageTests: XCTestCase {
    static let pipe = Result { try StableDiffusionDepth2ImgPipeline(modelDirectory: TinyModels.depth) }

    /// A `.pt` depth map (1, 40, 60), two images per prompt, non-multiple-of-8 input (100x70 -> 96x64).
    func testGivenDepthMap() throws {
        let c = try PipelineCase("depth_given")
        let image = try Image.load(path: c.directory.appendingPathComponent("input.png").path)
        let depth = try DepthMapFile.load(path: c.directory.appendingPathComponent("depth.pt").path)
        XCTAssertEqual(depth.shape, [1, 40, 60])
        let result = try Self.pipe.get()(c.options, image: image, depthMap: depth, strength: c.json["strength"]?.doubleValue ?? 0.8)
        assertClose(result.latents, try c.tensors.tensor("final_latents"), tolerance: 1e-3)
        assertImagesMatch(result, try c.expectedImages())
    }

    /// No depth map: the DPT estimator predicts it from the image.
    func testEstimatedDepth() throws {
        let c = try PipelineCase("depth_estimated")
        let image = try Image.load(path: c.directory.appendingPathComponent("input.png").path)
        let result = try Self.pipe.get()(c.options, image: image, strength: c.json["strength"]?.doubleValue ?? 0.8)
        assertClose(result.latents, try c.tensors.tensor("final_latents"), tolerance: 1e-3)
        assertImagesMatch(result, try c.expectedImages())
    }

    /// The same map from .pt, .npy and .safetensors; a 16-bit PNG keeps its raw values.
    func testDepthMapFormats() throws {
        let dir = try PipelineCase("depth_given").directory
        let pt = try DepthMapFile.load(path: dir.appendingPathComponent("depth.pt").path)
        XCTAssertEqual(try DepthMapFile.load(path: dir.appendingPathComponent("depth.npy").path).scalars, pt.scalars)
        XCTAssertEqual(try DepthMapFile.load(path: dir.appendingPathComponent("depth.safetensors").path).scalars, pt.scalars)
        let tmp = try temporaryFolder(self)
        // A 16-bit grayscale PNG written by hand: 2x1 pixels, values 1000 and 65535.
        let png = try Self.gray16PNG(width: 2, height: 1, values: [1000, 65535])
        try Data(png).write(to: tmp.appendingPathComponent("d.png"))
        XCTAssertEqual(try DepthMapFile.load(path: tmp.appendingPathComponent("d.png").path).scalars, [1000, 65535])
        try Data("garbage".utf8).write(to: tmp.appendingPathComponent("d.npy"))
        XCTAssertThrowsError(try DepthMapFile.load(path: tmp.appendingPathComponent("d.npy").path))
        XCTAssertThrowsError(try DepthMapFile.load(path: tmp.appendingPathComponent("d.txt").path))
    }

    func testBadDepthMapsAreRejected() throws {
        let pipe = try Self.pipe.get()
        let image = try Image(width: 32, height: 32, channels: 3, fill: 100)
        var o = GenerationOptions(prompt: "x")
        o.numInferenceSteps = 2
        XCTAssertThrowsError(try pipe(o, image: image, depthMap: Tensor(repeating: 3, shape: [1, 8, 8]))) {
            XCTAssertTrue("\($0)".contains("constant"), "\($0)")
        }
        XCTAssertThrowsError(try pipe(o, image: image, depthMap: Tensor(zeros: [1, 1, 8, 8])))
    }

    /// A minimal valid 16-bit grayscale PNG, written by hand (a zlib "stored" block needs no compressor).
    static func gray16PNG(width: Int, height: Int, values: [UInt16]) throws -> [UInt8] {
        var raw: [UInt8] = []
        for y in 0..<height {
            raw.append(0)
            for x in 0..<width { let v = values[y * width + x]; raw += [UInt8(v >> 8), UInt8(v & 255)] }
        }
        var zlib: [UInt8] = [0x78, 0x01, 0x01, UInt8(raw.count & 255), UInt8(raw.count >> 8),
                             UInt8(~raw.count & 255), UInt8((~raw.count >> 8) & 255)] + raw
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in raw { a = (a + UInt32(byte)) % 65521; b = (b + a) % 65521 }
        let adler = b << 16 | a
        zlib += [UInt8(adler >> 24), UInt8((adler >> 16) & 255), UInt8((adler >> 8) & 255), UInt8(adler & 255)]
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
            let body = Array(type.utf8) + data
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in body {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
            }
            crc = ~crc
            let n = UInt32(data.count)
            return [UInt8(n >> 24), UInt8((n >> 16) & 255), UInt8((n >> 8) & 255), UInt8(n & 255)] + body
                + [UInt8(crc >> 24), UInt8((crc >> 16) & 255), UInt8((crc >> 8) & 255), UInt8(crc & 255)]
        }
        let w = UInt32(width), h = UInt32(height)
        let ihdr: [UInt8] = [UInt8(w >> 24), UInt8((w >> 16) & 255), UInt8((w >> 8) & 255), UInt8(w & 255),
                             UInt8(h >> 24), UInt8((h >> 16) & 255), UInt8((h >> 8) & 255), UInt8(h & 255), 16, 0, 0, 0, 0]
        return [137, 80, 78, 71, 13, 10, 26, 10] + chunk("IHDR", ihdr) + chunk("IDAT", zlib) + chunk("IEND", [])
    }
}
