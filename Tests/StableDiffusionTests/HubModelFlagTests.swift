import Foundation
import StableDiffusion
import XCTest

/// `--model owner/name[@revision]`: the generating commands take Hub repo ids, through the cache.
extension HubTests {
    func testModelFlagTakesARepoIdOnlineThenOffline() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        let out = try temporaryFolder(self)
        let env = ["HF_ENDPOINT": hub.endpoint.absoluteString, "HF_HUB_CACHE": cache.path, "HF_HOME": cache.path]
        func txt2img(_ model: String, _ name: String, env: [String: String]) throws -> (Int32, String, URL) {
            let file = out.appendingPathComponent(name)
            let r = try runSD(["txt2img", "--model", model, "--prompt", "a red cube", "--steps", "2", "--height", "32", "--width", "32",
                               "--seed", "3", "--output", file.path], env: env)
            return (r.status, r.stderr, file)
        }
        let (s0, e0, local) = try txt2img(TinyModels.sd1.path, "local.png", env: [:])
        XCTAssertEqual(s0, 0, e0)
        // tiny/sd1@v1 is the bundled tiny model: downloaded with progress, then the same picture.
        let (s1, e1, online) = try txt2img("tiny/sd1@v1", "online.png", env: env)
        XCTAssertEqual(s1, 0, e1)
        XCTAssertTrue(e1.contains("unet/diffusion_pytorch_model.safetensors"), e1)
        XCTAssertEqual(try Image.load(path: online.path).pixels, try Image.load(path: local.path).pixels)
        // With the Hub gone and HF_HUB_OFFLINE=1, the cache alone serves it.
        hub.stop()
        let (s2, e2, offline) = try txt2img("tiny/sd1@v1", "offline.png", env: env.merging(["HF_HUB_OFFLINE": "1"]) { $1 })
        XCTAssertEqual(s2, 0, e2)
        XCTAssertEqual(try Image.load(path: offline.path).pixels, try Image.load(path: local.path).pixels)
        // A repo that is not cached, offline: exit 1, the repo named, nothing written.
        let (s3, e3, missing) = try txt2img("tiny/other", "missing.png", env: env.merging(["HF_HUB_OFFLINE": "1"]) { $1 })
        XCTAssertEqual(s3, 1)
        XCTAssertTrue(e3.contains("tiny/other"), e3)
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing.path))
        // Neither a path nor a repo id.
        let (s4, e4, _) = try txt2img("no/such/place", "x.png", env: env)
        XCTAssertEqual(s4, 1)
        XCTAssertTrue(e4.contains("is not a folder, a single-file checkpoint or a Hub repo id"), e4)
    }

    /// With only HOME set (containers, CI, `sudo -E`, services), what is downloaded lands in
    /// `$HOME/.cache/huggingface/hub`, where huggingface_hub looks, and is found there offline.
    func testCacheFollowsHomeLikeHuggingfaceHub() throws {
        let hub = try FakeHub(self)
        let home = try temporaryFolder(self)
        let out = try temporaryFolder(self)
        let download = try runSD(["download", "tiny/sd1@v1"], env: ["HF_ENDPOINT": hub.endpoint.absoluteString, "HOME": home.path])
        XCTAssertEqual(download.status, 0, download.stderr)
        let cache = home.appendingPathComponent(".cache/huggingface/hub")
        XCTAssertTrue(download.stdout.hasPrefix(cache.path + "/models--tiny--sd1/snapshots/"), download.stdout)
        hub.stop()
        let file = out.appendingPathComponent("offline.png")
        let r = try runSD(["txt2img", "--model", "tiny/sd1@v1", "--prompt", "a red cube", "--steps", "1", "--height", "32", "--width", "32",
                           "--seed", "3", "--output", file.path], env: ["HOME": home.path, "HF_HUB_OFFLINE": "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: file.path))
    }
}
