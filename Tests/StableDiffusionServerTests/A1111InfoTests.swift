import Foundation
import XCTest
import StableDiffusionServer

/// The read-only A1111 endpoints and /metrics.
final class A1111InfoTests: XCTestCase {
    func testListsOptionsProgressAndMetrics() async throws {
        let s = try await TestServer.start()
        let samplers = try await s.get("/sdapi/v1/samplers").array
        XCTAssertEqual(samplers.compactMap { $0["name"] as? String },
                       ["Euler a", "Euler", "LMS", "Heun", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "PLMS", "UniPC", "DDPM", "LCM", "TCD"])
        XCTAssertEqual(samplers[0]["aliases"] as? [String], ["k_euler_a", "k_euler_ancestral"])
        let models = try await s.get("/sdapi/v1/sd-models").array
        XCTAssertEqual(models.first?["title"] as? String, "tiny-sd1")
        XCTAssertFalse((models.first?["filename"] as? String ?? "/").contains("/"), "no server path is disclosed")
        var options = try await s.get("/sdapi/v1/options")
        XCTAssertEqual(options.json["sd_model_checkpoint"] as? String, "tiny-sd1")
        options = try await s.post("/sdapi/v1/options", ["sd_model_checkpoint": "tiny-sd1", "samples_format": "png"])
        XCTAssertEqual(options.status, 200)
        options = try await s.post("/sdapi/v1/options", ["sd_model_checkpoint": "other-model"])
        XCTAssertEqual(options.status, 422)
        let progress = try await s.get("/sdapi/v1/progress").json
        XCTAssertEqual(progress["progress"] as? Double, 0)
        XCTAssertEqual((progress["state"] as? [String: Any])?["job_count"] as? Int, 0)
        XCTAssertTrue(progress.keys.contains("current_image"))
        let awaited1 = try await s.get("/sdapi/v1/upscalers").array.first?["name"] as? String
        XCTAssertEqual(awaited1, "None")
        let awaited2 = try await s.get("/sdapi/v1/scripts").json["txt2img"] as? [String]
        XCTAssertEqual(awaited2, [])
        let awaited3 = try await s.get("/sdapi/v1/schedulers").array.compactMap { $0["name"] as? String }
        XCTAssertEqual(awaited3, ["automatic", "karras"])

        _ = try await s.post("/sdapi/v1/txt2img", ["prompt": "x", "steps": 1, "width": 32, "height": 32])
        let metrics = try await s.get("/metrics").text
        for series in ["sd_queue_length 0", "sd_jobs_total{outcome=\"done\"} 1", "sd_generation_seconds_count 1", "sd_jobs_running 0",
                       "sd_http_requests_total{status=\"200\"}"] {
            XCTAssertTrue(metrics.contains(series), "missing \(series) in\n\(metrics)")
        }
        let awaited4 = try await s.get("/nowhere").status
        XCTAssertEqual(awaited4, 404)
        try await s.stop()
    }
}
