import Foundation
import XCTest
import StableDiffusionServer

/// What the page at / reads before it draws its fields: /sd/v1/capabilities, for the default model or a named one.
final class WebPageTests: XCTestCase {
    func testCapabilitiesOfTheDefaultAndANamedModel() async throws {
        let s = try await TestServer.start()
        let own = try await s.get("/sd/v1/capabilities")
        XCTAssertEqual(own.status, 200)
        XCTAssertEqual(own.json["model"] as? String, "tiny-sd1")
        XCTAssertEqual(own.json["models"] as? [String], ["tiny-sd1"])
        XCTAssertEqual(own.json["kind"] as? String, "standard")
        XCTAssertEqual(own.json["family"] as? String, "sd")
        XCTAssertTrue(own.json.keys.contains("refiner") && own.json["refiner"] is NSNull, "\(own.json)")
        XCTAssertEqual(own.json["pipelines"] as? [String], ["txt2img", "img2img", "inpaint"])

        // A title as A1111 clients write it (extension, hash) names the same model.
        let named = try await s.get("/sd/v1/capabilities?model=tiny-sd1.safetensors%20%5Babc123%5D")
        XCTAssertEqual(named.status, 200)
        XCTAssertEqual(named.json["model"] as? String, "tiny-sd1")
        XCTAssertEqual(named.json["width"] as? Int, own.json["width"] as? Int)

        let unknown = try await s.get("/sd/v1/capabilities?model=sdxl-base")
        XCTAssertEqual(unknown.status, 422)
        XCTAssertTrue(unknown.text.contains("sdxl-base") && unknown.text.contains("tiny-sd1"), unknown.text)
        try await s.stop()
    }
}
