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
