import Foundation
import XCTest
import StableDiffusion

/// Fixtures from Scripts/reference/gen_imaging_fixtures.py (PIL 13 + diffusers 0.42.1).
enum ImagingFixtures {
    struct Cases: Decodable {
        struct Resize: Decodable { let key: String; let src: String; let filter: String; let w: Int; let h: Int; let box: [Double]? }
        struct Pre: Decodable {
            struct Config: Decodable { let vae_scale_factor: Int; let resample: String; let do_normalize: Bool; let do_binarize: Bool; let do_convert_grayscale: Bool }
            let key: String; let image: String; let height: Int?; let width: Int?; let resize_mode: String?; let crops_coords: [Int]?; let config: Config
        }
        struct Crop: Decodable { let key: String; let mask: String; let width: Int; let height: Int; let pad: Int }
        struct Overlay: Decodable { let key: String; let mask: String; let `init`: String; let image: String; let crop: [Int]? }
        let decoded: [String]; let resize: [Resize]; let pre: [Pre]; let crop: [Crop]; let overlay: [Overlay]
    }

    static func path(_ name: String) throws -> String { try FixturePaths.url("imaging/" + name).path }
    static func cases() throws -> Cases {
        try JSONDecoder().decode(Cases.self, from: Data(contentsOf: FixturePaths.url("imaging/cases.json")))
    }
    static func expected() throws -> SafeTensorsFile { try SafeTensorsFile(path: path("expected.safetensors")) }

    /// Largest per-byte difference between an image and an expected uint8 HxWxC (or HxW) tensor.
    static func maxDiff(_ image: Image, _ t: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) -> Int {
        let expectedShape = t.rank == 2 ? [image.height, image.width] : [image.height, image.width, image.channels]
        XCTAssertEqual(t.shape, expectedShape, "shape of \(what)", file: file, line: line)
        guard t.shape == expectedShape else { return 255 }
        var m = 0
        let s = t.scalars
        for i in 0..<s.count { m = max(m, abs(Int(image.pixels[i]) - Int(s[i]))) }
        return m
    }

    static func rgbSource(_ name: String) throws -> Image {
        switch name {
        case "rgb": return try Image.load(path: path("rgb8.png"))
        case "l": return try Image.load(path: path("baseline444.jpg")).toRGB().toGrayscale()
        default: return try Image.load(path: path("rgba8.png"))
        }
    }
}

final class ImagingDecodeTests: XCTestCase {
    func testDecodedImagesMatchDiffusersLoadImage() throws {
        let cases = try ImagingFixtures.cases(), expected = try ImagingFixtures.expected()
        XCTAssertGreaterThanOrEqual(cases.decoded.count, 19)
        for name in cases.decoded {
            let image = try Image.loadRGB(path: ImagingFixtures.path(name))
            let diff = ImagingFixtures.maxDiff(image, try expected.tensor("decoded/" + name), name)
            // libpng's simplified API rounds 16-bit samples with alpha to 8 bits where PIL truncates.
            let tolerance = name.hasSuffix("alpha16.png") || name == "rgba16.png" ? 1 : 0
            XCTAssertLessThanOrEqual(diff, tolerance, "\(name): max difference \(diff)")
        }
    }

    func testChannelsAsDecoded() throws {
        XCTAssertEqual(try Image.load(path: ImagingFixtures.path("gray8.png")).channels, 1)
        XCTAssertEqual(try Image.load(path: ImagingFixtures.path("gray.jpg")).channels, 1)
        XCTAssertEqual(try Image.load(path: ImagingFixtures.path("rgba8.png")).channels, 4)
        XCTAssertEqual(try Image.load(path: ImagingFixtures.path("gray_alpha8.png")).channels, 4)
        let rotated = try Image.load(path: ImagingFixtures.path("exif6.jpg"))
        XCTAssertEqual([rotated.width, rotated.height], [17, 23], "orientation 6 swaps the sides")
    }

    func testFormatSniffingIgnoresExtension() throws {
        let png = try [UInt8](Data(contentsOf: FixturePaths.url("imaging/rgb8.png")))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imaging-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let misnamed = dir.appendingPathComponent("really-a-png.jpg")
        try Data(png).write(to: misnamed)
        XCTAssertEqual(try Image.load(path: misnamed.path), try Image.decode(data: png))
        XCTAssertEqual(ImageFormat.sniff(png), .png)
    }
}

final class ImagingResizeTests: XCTestCase {
    func testResizeMatchesPILExactly() throws {
        let cases = try ImagingFixtures.cases(), expected = try ImagingFixtures.expected()
        var sources: [String: Image] = [:]
        for name in ["rgb", "l", "rgba"] { sources[name] = try ImagingFixtures.rgbSource(name) }
        XCTAssertGreaterThanOrEqual(cases.resize.count, 80)
        for c in cases.resize {
            let filter = try XCTUnwrap(ResampleFilter(diffusersName: c.filter))
            let box = c.box.map { ($0[0], $0[1], $0[2], $0[3]) }
            let out = try XCTUnwrap(sources[c.src]).resized(width: c.w, height: c.h, filter: filter, box: box)
            let diff = ImagingFixtures.maxDiff(out, try expected.tensor("resize/" + c.key), c.key)
            XCTAssertEqual(diff, 0, "\(c.key): max difference \(diff)")
        }
    }

    func testResizeRejectsBadArguments() throws {
        let image = try ImagingFixtures.rgbSource("rgb")
        XCTAssertThrowsError(try image.resized(width: 0, height: 5, filter: .lanczos))
        XCTAssertThrowsError(try image.resized(width: 5, height: 5, filter: .lanczos, box: (-1, 0, 4, 4)))
        XCTAssertThrowsError(try image.resized(width: 5, height: 5, filter: .lanczos, box: (0, 0, 41, 4)))
    }
}

final class ImagingProcessorTests: XCTestCase {
    func testPreprocessMatchesDiffusers() throws {
        let cases = try ImagingFixtures.cases(), expected = try ImagingFixtures.expected()
        XCTAssertGreaterThanOrEqual(cases.pre.count, 15)
        for c in cases.pre {
            let cfg = c.config
            let processor = cfg.do_binarize
                ? VaeImageProcessor.maskProcessor(vaeScaleFactor: cfg.vae_scale_factor)
                : try VaeImageProcessor(vaeScaleFactor: cfg.vae_scale_factor, resample: XCTUnwrap(ResampleFilter(diffusersName: cfg.resample)),
                                        doNormalize: cfg.do_normalize, doConvertGrayscale: cfg.do_convert_grayscale)
            var image = try Image.loadRGB(path: ImagingFixtures.path(c.image))
            if c.key.hasPrefix("mask_l") { image = image.toGrayscale() }
            let crop = c.crops_coords.map { CropRegion(x1: $0[0], y1: $0[1], x2: $0[2], y2: $0[3]) }
            let mode = try XCTUnwrap(ImageResizeMode(rawValue: c.resize_mode ?? "default"))
            let t = try processor.preprocess(image, height: c.height, width: c.width, resizeMode: mode, cropCoords: crop)
            let e = try expected.tensor("pre/" + c.key)
            XCTAssertEqual(t.shape, e.shape, c.key)
            guard t.shape == e.shape else { continue }
            let diff = zip(t.scalars, e.scalars).map { abs($0 - $1) }.max() ?? 0
            XCTAssertEqual(diff, 0, "\(c.key): max difference \(diff)")
        }
    }

    func testPostprocessMatchesDiffusers() throws {
        let expected = try ImagingFixtures.expected()
        let input = try expected.tensor("post/input")
        let processor = try VaeImageProcessor()
        let images = try processor.postprocess(input)
        let reference = try expected.tensor("post/output").scalars
        XCTAssertEqual(images.flatMap(\.pixels).map(Float.init), reference)
        var shifted = input
        shifted.withUnsafeMutableBufferPointer { b in for i in 0..<b.count { b[i] = b[i] * 0.5 + 0.5 } }
        let raw = try processor.postprocess(shifted, doDenormalize: [false, false])
        XCTAssertEqual(raw.flatMap(\.pixels).map(Float.init), try expected.tensor("post/output_nodenorm").scalars)
    }

    func testCropRegionMatchesDiffusers() throws {
        let cases = try ImagingFixtures.cases(), expected = try ImagingFixtures.expected()
        for c in cases.crop {
            let mask = try Image.loadRGB(path: ImagingFixtures.path(c.mask))
            let r = try VaeImageProcessor.cropRegion(mask: mask, width: c.width, height: c.height, pad: c.pad)
            XCTAssertEqual([r.x1, r.y1, r.x2, r.y2].map(Float.init), try expected.tensor("crop/" + c.key).scalars, c.key)
        }
        let black = try Image(width: 8, height: 8, channels: 3)
        XCTAssertThrowsError(try VaeImageProcessor.cropRegion(mask: black, width: 8, height: 8, pad: 2)) { error in
            XCTAssertTrue("\(error)".contains("empty"), "\(error)")
        }
    }

    func testApplyOverlayMatchesDiffusers() throws {
        let cases = try ImagingFixtures.cases(), expected = try ImagingFixtures.expected()
        let processor = try VaeImageProcessor()
        for c in cases.overlay {
            let out = try processor.applyOverlay(
                mask: Image.loadRGB(path: ImagingFixtures.path(c.mask)), initImage: Image.loadRGB(path: ImagingFixtures.path(c.`init`)),
                image: Image.loadRGB(path: ImagingFixtures.path(c.image)),
                cropCoords: c.crop.map { CropRegion(x1: $0[0], y1: $0[1], x2: $0[2], y2: $0[3]) })
            let diff = ImagingFixtures.maxDiff(out, try expected.tensor("overlay/" + c.key), c.key)
            XCTAssertEqual(diff, 0, "\(c.key): max difference \(diff)")
        }
    }

    func testGrayscaleAndTensorConversions() throws {
        let image = try Image(width: 2, height: 1, channels: 3, pixels: [255, 0, 0, 10, 200, 30])
        // PIL: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
        XCTAssertEqual(image.toGrayscale().pixels, [76, 124])
        let t = image.tensor()
        XCTAssertEqual(t.shape, [1, 1, 2, 3])
        XCTAssertEqual(try Image.fromTensor(t), [image])
        XCTAssertThrowsError(try VaeImageProcessor(doConvertRGB: true, doConvertGrayscale: true))
        XCTAssertThrowsError(try VaeImageProcessor().preprocess(try Image(width: 7, height: 7, channels: 3))) { error in
            XCTAssertTrue("\(error)".contains("dimensions"), "\(error)")
        }
    }
}
