import Foundation
import XCTest
import StableDiffusion

/// Repo-id parsing and the environment huggingface_hub reads.
final class HubRepoIDTests: XCTestCase {
    func testRepoIDsParseAndBadOnesAreRejectedWithTheReason() throws {
        let id = try HubRepoID("runwayml/stable-diffusion-v1-5@fp16")
        XCTAssertEqual(id.id, "runwayml/stable-diffusion-v1-5")
        XCTAssertEqual(id.revision, "fp16")
        XCTAssertEqual(id.owner, "runwayml")
        XCTAssertEqual(id.description, "runwayml/stable-diffusion-v1-5@fp16")
        XCTAssertNil(try HubRepoID("a_b/C.d-1").revision)
        XCTAssertEqual(try HubRepoID("o/n@refs/pr/1").revision, "refs/pr/1")
        for bad in ["name", "a/b/c", "/b", "a/", "a/-b", "a/b.", "a/b--c", "a/b..c", "a/b.git", "a/b c", "a/b@", "a/b@x/../y", "a/bé"] {
            XCTAssertThrowsError(try HubRepoID(bad), bad) { error in
                XCTAssertTrue("\(error)".contains(bad), "\(error)")
            }
        }
        XCTAssertThrowsError(try HubRepoID(String(repeating: "x", count: 97) + "/n"))
        // The library's entry points check repo and revision before touching the cache.
        let client = try HubClient(environment: HubEnvironment(endpoint: URL(fileURLWithPath: "/"), cacheDirectory: try temporaryFolder(self), offline: true))
        XCTAssertThrowsError(try client.snapshot(repo: "a/b", revision: "../../x")) { XCTAssertTrue("\($0)".contains("../../x"), "\($0)") }
        XCTAssertThrowsError(try client.snapshot(repo: "../b"))
        // An existing folder is a local model, never a repo id.
        let dir = try temporaryFolder(self)
        XCTAssertNil(try HubRepoID.parseUnlessLocal(dir.path))
        XCTAssertEqual(try HubRepoID.parseUnlessLocal("owner/name")?.id, "owner/name")
    }

    func testEnvironmentIsReadAsHuggingfaceHubReadsIt() throws {
        let home = NSHomeDirectory()
        var e = try HubEnvironment(environment: [:])
        XCTAssertEqual(e.endpoint.absoluteString, "https://huggingface.co")
        XCTAssertEqual(e.cacheDirectory.path, "\(home)/.cache/huggingface/hub")
        XCTAssertFalse(e.offline)
        e = try HubEnvironment(environment: ["XDG_CACHE_HOME": "/x", "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"])
        XCTAssertEqual(e.cacheDirectory.path, "/x/huggingface/hub")
        XCTAssertNil(e.token)
        e = try HubEnvironment(environment: ["HF_HOME": "/h", "XDG_CACHE_HOME": "/x", "HF_ENDPOINT": "http://127.0.0.1:9/", "HF_HUB_OFFLINE": "yes",
                                             "HF_TOKEN": " hf_abc\n", "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0"])
        XCTAssertEqual(e.cacheDirectory.path, "/h/hub")
        XCTAssertEqual(e.endpoint.absoluteString, "http://127.0.0.1:9")
        XCTAssertEqual(e.token, "hf_abc")
        XCTAssertTrue(e.offline)
        e = try HubEnvironment(environment: ["HF_HOME": "/h", "HF_HUB_CACHE": "~/c", "TRANSFORMERS_OFFLINE": "1"])
        XCTAssertEqual(e.cacheDirectory.path, "\(home)/c")
        XCTAssertTrue(e.offline)
        // The token file: HF_TOKEN_PATH, else $HF_HOME/token; HF_TOKEN wins over both.
        let dir = try temporaryFolder(self)
        try Data("hf_file\n".utf8).write(to: dir.appendingPathComponent("token"))
        XCTAssertEqual(try HubEnvironment(environment: ["HF_HOME": dir.path]).token, "hf_file")
        XCTAssertEqual(try HubEnvironment(environment: ["HF_TOKEN_PATH": dir.appendingPathComponent("token").path]).token, "hf_file")
        XCTAssertEqual(try HubEnvironment(environment: ["HF_HOME": dir.path, "HF_TOKEN": "hf_env"]).token, "hf_env")
        XCTAssertEqual(try HubEnvironment(environment: ["HF_HOME": "$D/sub", "D": dir.path]).cacheDirectory.path, dir.path + "/sub/hub")
        XCTAssertThrowsError(try HubEnvironment(environment: ["HF_ENDPOINT": "ftp://x"]))
    }

    /// huggingface_hub finds its home through Python's `expanduser("~")`, which reads `$HOME` first; the order
    /// is `HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME`, `HOME`, for the cache and the token file alike.
    func testHomeVariableLocatesTheCacheAndTokenAsHuggingfaceHubDoes() throws {
        let home = try temporaryFolder(self)
        let hf = home.appendingPathComponent(".cache/huggingface")
        try FileManager.default.createDirectory(at: hf, withIntermediateDirectories: true)
        try Data("hf_home_token\n".utf8).write(to: hf.appendingPathComponent("token"))
        var e = try HubEnvironment(environment: ["HOME": home.path])
        XCTAssertEqual(e.cacheDirectory.path, hf.path + "/hub")
        XCTAssertEqual(e.token, "hf_home_token")
        // A trailing slash is dropped, as expanduser does; `~` in any of the variables is $HOME too.
        XCTAssertEqual(try HubEnvironment(environment: ["HOME": home.path + "/"]).cacheDirectory.path, hf.path + "/hub")
        XCTAssertEqual(try HubEnvironment(environment: ["HOME": home.path, "HF_HUB_CACHE": "~/c"]).cacheDirectory.path, home.path + "/c")
        XCTAssertEqual(try HubEnvironment(environment: ["HOME": home.path, "HF_HOME": "~/h"]).cacheDirectory.path, home.path + "/h/hub")
        // XDG_CACHE_HOME wins over HOME (cache and token), HF_HOME over both, HF_HUB_CACHE over all for the cache.
        e = try HubEnvironment(environment: ["HOME": home.path, "XDG_CACHE_HOME": "/xdg"])
        XCTAssertEqual(e.cacheDirectory.path, "/xdg/huggingface/hub")
        XCTAssertNil(e.token)
        e = try HubEnvironment(environment: ["HOME": "/elsewhere", "XDG_CACHE_HOME": home.path + "/.cache"])
        XCTAssertEqual(e.token, "hf_home_token")
        XCTAssertEqual(try HubEnvironment(environment: ["HOME": home.path, "XDG_CACHE_HOME": "/xdg", "HF_HOME": "/h"]).cacheDirectory.path, "/h/hub")
        e = try HubEnvironment(environment: ["HOME": home.path, "XDG_CACHE_HOME": "/xdg", "HF_HOME": "/h", "HF_HUB_CACHE": "/c"])
        XCTAssertEqual(e.cacheDirectory.path, "/c")
        // The token file stays under HF_HOME (not HF_HUB_CACHE), and HOME's when HF_HOME is unset.
        XCTAssertEqual(try HubEnvironment(environment: ["HOME": home.path, "HF_HUB_CACHE": "/c"]).token, "hf_home_token")
        // An empty HOME is used as it is (Python: "" + "/.cache"), not replaced by the account's home.
        XCTAssertEqual(try HubEnvironment(environment: ["HOME": ""]).cacheDirectory.path, "/.cache/huggingface/hub")
    }
}
