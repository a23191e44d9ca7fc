import Foundation
import XCTest
import StableDiffusion

/// `CannyEdges` against OpenCV's cv2.Canny (Scripts/reference/gen_canny_fixtures.py): every edge map bit-identical.
final class CannyTests: XCTestCase {
    func testEdgeMapsEqualOpenCV() throws {
        let root = try FixturePaths.url("canny")
        let data = try Data(contentsOf: root.appendingPathComponent("cases.json"))
        let cases = try JSONValue.parse(data, file: "cases.json").objectValue?["cases"]?.arrayValue ?? []
        XCTAssertEqual(cases.count, 20)
        for c in cases {
            guard let o = c.objectValue, let input = o["input"]?.stringValue, let expected = o["expected"]?.stringValue,
                  let low = o["low"]?.doubleValue, let high = o["high"]?.doubleValue else { return XCTFail("bad case \(c)") }
            let image = try Image.load(path: root.appendingPathComponent(input).path)
            let want = try Image.load(path: root.appendingPathComponent(expected).path)
            let got = try CannyEdges.detect(image, low: low, high: high)
            XCTAssertEqual([got.width, got.height, got.channels], [want.width, want.height, 1], expected)
            let differing = zip(got.pixels, want.pixels).filter { $0 != $1 }.count
            XCTAssertEqual(differing, 0, "\(expected): \(differing) pixels differ from cv2.Canny")
            XCTAssertEqual(got.pixels.filter { $0 == 255 }.count, o["edge_pixels"]?.intValue, expected)
        }
    }

    func testBadThresholds() throws {
        let image = try Image(width: 8, height: 8, channels: 3, fill: 9)
        for (low, high) in [(-1.0, 10.0), (Double.nan, 10), (1, .infinity)] {
            XCTAssertThrowsError(try CannyEdges.detect(image, low: low, high: high)) { XCTAssertTrue("\($0)".contains("threshold"), "\($0)") }
        }
        XCTAssertEqual(try CannyEdges.detect(image, low: 100, high: 200).pixels, [UInt8](repeating: 0, count: 64))
    }
}

/// `sd detect`: the preprocessors alone, as control images (three equal channels).
final class DetectCommandTests: XCTestCase {
    func testCannyAndDepthModules() throws {
        let out = try temporaryFolder(self)
        let root = try FixturePaths.url("canny")
        var path = out.appendingPathComponent("edges.png").path
        var r = try SDProcess.run(["detect", "--module", "canny", "--low", "50", "--high", "150",
                                   "--image", root.appendingPathComponent("scene_rgb.png").path, "--output", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        var got = try Image.load(path: path)
        var want = try Image.load(path: root.appendingPathComponent("scene_rgb-50-150.png").path)
        XCTAssertEqual(got.channels, 3)
        XCTAssertEqual(stride(from: 0, to: got.pixels.count, by: 3).map { got.pixels[$0] }, want.pixels)
        let pixels = got.pixels
        let equalChannels = stride(from: 0, to: pixels.count, by: 3).allSatisfy { (i: Int) -> Bool in
            pixels[i] == pixels[i + 1] && pixels[i] == pixels[i + 2]
        }
        XCTAssertTrue(equalChannels)

        // depth: transformers' DPT on the tiny depth-to-image folder, min-max normalised (float rounding may
        // move a value across an 8-bit step).
        path = out.appendingPathComponent("depth.png").path
        r = try SDProcess.run(["detect", "--module", "depth", "--model", TinyModels.depth.path,
                               "--image", root.appendingPathComponent("scene_rgb.png").path, "--output", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        got = try Image.load(path: path)
        want = try Image.load(path: root.appendingPathComponent("depth.png").path)
        let gray = stride(from: 0, to: got.pixels.count, by: 3).map { got.pixels[$0] }
        XCTAssertEqual(gray.count, want.pixels.count)
        let worst = zip(gray, want.pixels).map { (a: UInt8, b: UInt8) -> Int in abs(Int(a) - Int(b)) }.max() ?? 99
        XCTAssertLessThanOrEqual(worst, 1)
        XCTAssertEqual(gray.min(), 0)
        XCTAssertEqual(gray.max(), 255)

        for (args, expected) in [
            (["--module", "sobel"], "--module must be one of none, canny, depth"),
            (["--module", "depth"], "--module depth needs --model"),
            (["--module", "canny", "--low=-3"], "--low and --high"),
            (["--module", "canny", "--model", TinyModels.depth.path], "--model applies to --module depth"),
        ] {
            r = try SDProcess.run(["detect"] + args + ["--image", root.appendingPathComponent("scene_rgb.png").path,
                                                       "--output", out.appendingPathComponent("x.png").path])
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains(expected), r.stderr)
        }
        XCTAssertEqual(filesIn(out), ["depth.png", "edges.png"])
    }
}
