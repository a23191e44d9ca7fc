import Foundation
import XCTest
import StableDiffusion

/// Downloading pipelines from a (fake, local) Hugging Face Hub into the huggingface_hub cache.
final class HubTests: XCTestCase {
    let a = FakeHub.commitA, b = FakeHub.commitB
    /// What diffusers downloads from repo A (no variant): one weight file per model folder, no .bin/.ckpt/flax/onnx/README.
    let plainFiles = ["model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json", "text_encoder/model.safetensors",
                      "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
                      "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json", "vae/diffusion_pytorch_model.safetensors"]

    func repoFolder(_ cache: URL, _ repo: String = "tiny/sd1") -> URL {
        cache.appendingPathComponent("models--" + repo.replacingOccurrences(of: "/", with: "--"))
    }

    func blobs(_ cache: URL, _ repo: String = "tiny/sd1") -> [String] { filesIn(repoFolder(cache, repo).appendingPathComponent("blobs")) }

    func assertError(_ body: @autoclosure () throws -> Any, contains parts: [String], file: StaticString = #filePath, line: UInt = #line,
                     _ check: (HubError) -> Bool = { _ in true }) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let e = error as? HubError else { return XCTFail("not a HubError: \(error)", file: file, line: line) }
            XCTAssertTrue(check(e), "\(e)", file: file, line: line)
            for p in parts { XCTAssertTrue("\(e)".contains(p), "\"\(e)\" lacks \"\(p)\"", file: file, line: line) }
        }
    }

    func testFirstDownloadLaysOutTheCacheThenServesItWithTheServerStopped() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        let folder = try hub.client(cache: cache).snapshot(repo: "tiny/sd1")
        XCTAssertEqual(folder.path, repoFolder(cache).appendingPathComponent("snapshots/\(a)").path)
        XCTAssertEqual(filesUnder(folder), plainFiles)
        XCTAssertEqual(try String(contentsOf: repoFolder(cache).appendingPathComponent("refs/main"), encoding: .utf8), a)
        // Relative symlinks into blobs/<etag>: the sha256 for LFS files, the git sha1 for the others.
        let unet = folder.appendingPathComponent("unet/diffusion_pytorch_model.safetensors").path
        let target = try FileManager.default.destinationOfSymbolicLink(atPath: unet)
        XCTAssertTrue(target.hasPrefix("../../../blobs/"), target)
        XCTAssertEqual(target.split(separator: "/").last?.count, 64)
        let index = try FileManager.default.destinationOfSymbolicLink(atPath: folder.appendingPathComponent("model_index.json").path)
        XCTAssertTrue(index.hasPrefix("../../blobs/") && index.split(separator: "/").last?.count == 40, index)
        XCTAssertEqual(blobs(cache).count, plainFiles.count)
        XCTAssertFalse(blobs(cache).contains { $0.hasSuffix(".incomplete") })
        XCTAssertTrue(FileManager.default.fileExists(atPath: cache.appendingPathComponent("CACHEDIR.TAG").path))
        // The full listing, as snapshot_download caches it (README.md included though not downloaded).
        let tree = try JSONSerialization.jsonObject(with: Data(contentsOf: repoFolder(cache).appendingPathComponent("trees/\(a).json"))) as? [String: Any]
        XCTAssertEqual(tree?["format_version"] as? Int, 1)
        XCTAssertNotNil((tree?["files"] as? [String: Any])?["README.md"])

        // Requests look like huggingface_hub's.
        let log = try hub.log()
        XCTAssertTrue(log.allSatisfy { ($0["accept_encoding"] as? String) == "identity" }, "\(log)")
        XCTAssertTrue(log.allSatisfy { ($0["user_agent"] as? String)?.contains("hf_hub") ?? false })

        // Second run: nothing downloaded again, and with the server gone the cache still answers.
        try hub.clearLog()
        XCTAssertEqual(try hub.client(cache: cache).snapshot(repo: "tiny/sd1"), folder)
        XCTAssertFalse(try hub.log().contains { ($0["method"] as? String) == "GET" && ($0["server"] as? String) == "cdn" })
        // A commit whose listing and files are cached: no request at all.
        try hub.clearLog()
        XCTAssertEqual(try hub.client(cache: cache).snapshot(repo: "tiny/sd1", revision: a), folder)
        XCTAssertTrue(try hub.log().isEmpty)
        // A Hub answering 500: the cache answers; without a cache the error names the status.
        try hub.control(["refuse_all": true])
        XCTAssertEqual(try hub.client(cache: cache).snapshot(repo: "tiny/sd1"), folder)
        assertError(try hub.client(cache: try temporaryFolder(self)).snapshot(repo: "tiny/sd1"), contains: ["tiny/sd1", "500"])
        hub.stop()
        XCTAssertEqual(try hub.client(cache: cache).snapshot(repo: "tiny/sd1").path, folder.path)
        assertError(try hub.client(cache: try temporaryFolder(self)).snapshot(repo: "tiny/sd1"), contains: ["tiny/sd1", "main", "network"])
    }

    func testDroppedConnectionIsResumedWithARangeRequest() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        try hub.control(["drop_after": 50_000, "drop_count": 1])
        let folder = try hub.client(cache: cache).snapshot(repo: "tiny/sd1")
        XCTAssertEqual(filesUnder(folder), plainFiles)
        let ranges = try hub.log().compactMap { $0["range"] as? String }
        XCTAssertEqual(ranges, ["bytes=50000-"])
        // The resumed blob is whole: it loads.
        XCTAssertNoThrow(try StableDiffusionComponents(directory: folder))
    }

    func testNetworkFailureKeepsTheIncompleteFileAndTheNextRunResumesIt() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        try hub.control(["drop_after": 50_000, "drop_count": 1])
        assertError(try hub.client(cache: cache, retries: 0).snapshot(repo: "tiny/sd1"),
                    contains: ["tiny/sd1", "text_encoder/model.safetensors", "network"]) { if case .network = $0 { return true }; return false }
        let partial = blobs(cache).filter { $0.hasSuffix(".incomplete") }
        XCTAssertEqual(partial.count, 1)
        let size = try FileManager.default.attributesOfItem(atPath: repoFolder(cache).appendingPathComponent("blobs/\(partial[0])").path)[.size] as? Int
        XCTAssertEqual(size, 50_000)
        XCTAssertFalse(FileManager.default.fileExists(atPath: repoFolder(cache).appendingPathComponent("snapshots/\(a)/text_encoder/model.safetensors").path))
        try hub.clearLog()
        let folder = try hub.client(cache: cache, retries: 0).snapshot(repo: "tiny/sd1")
        XCTAssertEqual(filesUnder(folder), plainFiles)
        XCTAssertEqual(try hub.log().compactMap { $0["range"] as? String }, ["bytes=50000-"])
        XCTAssertFalse(blobs(cache).contains { $0.hasSuffix(".incomplete") })
    }

    func testCorruptedDownloadIsDetectedAndRemoved() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        try hub.control(["corrupt_count": 1])
        assertError(try hub.client(cache: cache).snapshot(repo: "tiny/sd1"), contains: ["text_encoder/model.safetensors", "corrupted", "sha256"]) {
            if case .corrupted = $0 { return true }; return false
        }
        XCTAssertFalse(blobs(cache).contains { $0.hasSuffix(".incomplete") })
        XCTAssertFalse(FileManager.default.fileExists(atPath: repoFolder(cache).appendingPathComponent("snapshots/\(a)/text_encoder/model.safetensors").path))
        XCTAssertEqual(filesUnder(try hub.client(cache: cache).snapshot(repo: "tiny/sd1")), plainFiles)
    }

    func testOfflineModeUsesOnlyTheCacheAndNamesWhatIsMissing() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        assertError(try hub.client(cache: cache, offline: true).snapshot(repo: "tiny/sd1"), contains: ["tiny/sd1", "main", "HF_HUB_OFFLINE", cache.path])
        XCTAssertTrue(try hub.log().isEmpty, "offline mode touched the network")
        let folder = try hub.client(cache: cache).snapshot(repo: "tiny/sd1")
        try hub.clearLog()
        XCTAssertEqual(try hub.client(cache: cache, offline: true).snapshot(repo: "tiny/sd1"), folder)
        // A variant that was never downloaded is a miss, named.
        assertError(try hub.client(cache: cache, offline: true).snapshot(repo: "tiny/sd1", variant: "fp16"), contains: ["tiny/sd1", "fp16", "HF_HUB_OFFLINE"])
        // A file missing from the snapshot (deleted by hand) is named too.
        try FileManager.default.removeItem(at: folder.appendingPathComponent("unet/diffusion_pytorch_model.safetensors"))
        assertError(try hub.client(cache: cache, offline: true).snapshot(repo: "tiny/sd1"), contains: ["unet/diffusion_pytorch_model.safetensors", "tiny/sd1"])
        XCTAssertTrue(try hub.log().isEmpty, "offline mode touched the network")
    }

    func testGatedRepoNeedsTheTokenWhichNeverLeavesTheHub() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        assertError(try hub.client(cache: cache).snapshot(repo: "gated/sd1"), contains: ["gated/sd1", "401", "HF_TOKEN", "hf auth login"]) {
            if case .accessDenied(_, _, _, _, true, false) = $0 { return true }; return false
        }
        assertError(try hub.client(cache: cache, token: "hf_wrong").snapshot(repo: "gated/sd1"), contains: ["gated/sd1", "token"])
        try hub.clearLog()
        let folder = try hub.client(cache: cache, token: FakeHub.token).snapshot(repo: "gated/sd1")
        XCTAssertEqual(filesUnder(folder), plainFiles)
        let log = try hub.log()
        XCTAssertTrue(log.filter { ($0["server"] as? String) == "hub" }.allSatisfy { ($0["authorization"] as? String) == "Bearer \(FakeHub.token)" })
        let cdn = log.filter { ($0["server"] as? String) == "cdn" }
        XCTAssertFalse(cdn.isEmpty)
        XCTAssertTrue(cdn.allSatisfy { $0["authorization"] == nil || $0["authorization"] is NSNull }, "token sent to the CDN: \(cdn)")
    }

    func testVariantDownloadsOnlyThatVariantAndLoads() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        let folder = try hub.client(cache: cache).snapshot(repo: "tiny/sd1", variant: "fp16")
        let weights = filesUnder(folder).filter { $0.hasSuffix(".safetensors") }
        XCTAssertEqual(weights, ["text_encoder/model.fp16.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors"])
        XCTAssertNoThrow(try StableDiffusionComponents(directory: folder, variant: "fp16"))
        assertError(try hub.client(cache: cache).snapshot(repo: "tiny/sd1", variant: "bf16"), contains: ["tiny/sd1", "bf16"])
    }

    func testRevisionsBranchTagAndCommit() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        let refs = repoFolder(cache).appendingPathComponent("refs")
        // A commit: its snapshot, and no ref written.
        let pinned = try hub.client(cache: cache).snapshot(repo: "tiny/sd1", revision: b)
        XCTAssertEqual(pinned.lastPathComponent, b)
        XCTAssertEqual(filesIn(refs), [])
        // A tag and a branch: refs/<name> holds the commit.
        XCTAssertEqual(try hub.client(cache: cache).snapshot(HubRepoID("tiny/sd1@v1")).lastPathComponent, b)
        XCTAssertEqual(try hub.client(cache: cache).snapshot(repo: "tiny/sd1", revision: "main").lastPathComponent, a)
        XCTAssertEqual(filesIn(refs), ["main", "v1"])
        XCTAssertEqual(try String(contentsOf: refs.appendingPathComponent("v1"), encoding: .utf8), b)
        // Offline, a branch resolves through refs/ and a commit directly.
        XCTAssertEqual(try hub.client(cache: cache, offline: true).snapshot(repo: "tiny/sd1", revision: "v1").lastPathComponent, b)
        XCTAssertEqual(try hub.client(cache: cache, offline: true).snapshot(repo: "tiny/sd1", revision: b).lastPathComponent, b)
        assertError(try hub.client(cache: cache, offline: true).snapshot(repo: "tiny/sd1", revision: "dev"), contains: ["dev", "tiny/sd1"])
    }

    func testNotFoundErrorsNameRepoRevisionAndFile() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        let client = try hub.client(cache: cache)
        assertError(try client.snapshot(repo: "nobody/nothing"), contains: ["nobody/nothing", "not found"]) {
            if case .repoNotFound = $0 { return true }; return false
        }
        assertError(try client.snapshot(repo: "tiny/sd1", revision: "nope"), contains: ["tiny/sd1", "nope"]) {
            if case .revisionNotFound = $0 { return true }; return false
        }
        // A missing optional file: nil, and remembered in .no_exist/<commit>/<path> as huggingface_hub does.
        XCTAssertNil(try client.file(repo: "tiny/sd1", revision: "main", path: "unet/missing.json"))
        let marker = repoFolder(cache).appendingPathComponent(".no_exist/\(a)/unet/missing.json")
        XCTAssertTrue(FileManager.default.fileExists(atPath: marker.path))
        try hub.clearLog()
        XCTAssertNil(try hub.client(cache: cache, offline: true).file(repo: "tiny/sd1", revision: "main", path: "unet/missing.json"))
        XCTAssertNil(try client.file(repo: "tiny/sd1", revision: a, path: "unet/missing.json"))
        XCTAssertTrue(try hub.log().isEmpty, ".no_exist was not honoured")
        // A name that would leave the snapshot folder is refused before any request.
        assertError(try client.file(repo: "tiny/sd1", path: "../../evil") as Any, contains: ["../../evil", "tiny/sd1", "unsafe"])
        // A file that exists comes back as its snapshot path.
        let readme = try client.file(repo: "tiny/sd1", revision: "main", path: "README.md")
        XCTAssertEqual(readme.flatMap { try? String(contentsOf: $0, encoding: .utf8) }, "# tiny")
    }

    func testConcurrentDownloadsOfOneRepoShareTheCacheSafely() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        let clients = [try hub.client(cache: cache), try hub.client(cache: cache)]
        let results = LockedBox<[String]>([])
        // Two downloads at once (as two processes would): the per-blob lock makes the second wait, then link.
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let r = (try? clients[i].snapshot(repo: "tiny/sd1")).map { filesUnder($0).joined(separator: ",") } ?? "failed"
            results.update { $0.append(r) }
        }
        XCTAssertEqual(results.value, [plainFiles.joined(separator: ","), plainFiles.joined(separator: ",")])
        XCTAssertEqual(blobs(cache).count, plainFiles.count)
        XCTAssertNoThrow(try StableDiffusionComponents(directory: repoFolder(cache).appendingPathComponent("snapshots/\(a)")))
    }

    func testRenamedRepoRelativeRedirectIsFollowed() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        let folder = try hub.client(cache: cache).snapshot(repo: "old/sd1")
        XCTAssertEqual(filesUnder(folder), plainFiles)
        XCTAssertTrue(folder.path.contains("models--old--sd1"))
    }

    func testShardedWeightsAndSkippedSafetyChecker() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        let sharded = try hub.client(cache: cache).snapshot(repo: "tiny/sd1-sharded")
        XCTAssertEqual(filesUnder(sharded).filter { $0.hasPrefix("text_encoder/") },
                       ["text_encoder/config.json", "text_encoder/model-00001-of-00002.safetensors",
                        "text_encoder/model-00002-of-00002.safetensors", "text_encoder/model.safetensors.index.json"])
        XCTAssertNoThrow(try StableDiffusionComponents(directory: sharded))
        let safety = try hub.client(cache: cache).snapshot(repo: "tiny/sd1-safety")
        let files = filesUnder(safety)
        XCTAssertFalse(files.contains { $0.hasPrefix("safety_checker/") }, "\(files)")
        XCTAssertTrue(files.contains("feature_extractor/preprocessor_config.json"))
        XCTAssertNoThrow(try StableDiffusionComponents(directory: safety))
        // Offline, the missing safety checker is not a miss.
        XCTAssertEqual(try hub.client(cache: cache, offline: true).snapshot(repo: "tiny/sd1-safety"), safety)
    }

    /// An SDXL repo as the real ones are laid out: both text encoders and tokenizers, --variant fp16 with the
    /// sharded fp16 UNet. vae_1_0 is not a pipeline component, yet diffusers 0.42's `download` takes every
    /// variant weight file in the repo (`allow_patterns = list(model_filenames)`), so its fp16 weights come
    /// too, without its config; the snapshot is diffusers' and loads as SDXL, vae_1_0 unread.
    func testSDXLRepoWithFP16VariantAndShardedUNet() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        let folder = try hub.client(cache: cache).snapshot(repo: "tiny/sdxl", variant: "fp16")
        let files = filesUnder(folder)
        XCTAssertEqual(files.filter { $0.hasSuffix(".safetensors") || $0.hasSuffix(".json") && $0.hasPrefix("unet/") },
                       ["text_encoder/model.fp16.safetensors", "text_encoder_2/model.fp16.safetensors", "unet/config.json",
                        "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
                        "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors", "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
                        "vae/diffusion_pytorch_model.fp16.safetensors", "vae_1_0/diffusion_pytorch_model.fp16.safetensors"])
        XCTAssertTrue(files.contains("tokenizer_2/vocab.json"), "\(files)")
        XCTAssertFalse(files.contains("vae_1_0/config.json"), "\(files)")
        let components = try StableDiffusionComponents(directory: folder, variant: "fp16")
        XCTAssertEqual(components.family, .stableDiffusionXL)
        let c = try PipelineCase("sdxl_txt2img_zero_negative")
        assertImagesMatch(try StableDiffusionXLPipeline(components: components)(c.sdxlOptions), try c.expectedImages())
    }

    /// A VAE repo (config.json and weights at the top) for --vae: config.json and the safetensors weights only,
    /// then offline from the cache; a pipeline repo or a missing variant is an error naming the repo.
    func testSingleModelRepoForTheVAE() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        let folder = try hub.client(cache: cache).modelSnapshot(repo: "tiny/taesd")
        XCTAssertEqual(filesUnder(folder), ["config.json", "diffusion_pytorch_model.safetensors"])
        let sd1 = try StableDiffusionComponents(directory: TinyModels.sd1, includeVAEEncoder: false)
        let c = try PipelineCase("vae_taesd_txt2img")
        let comps = try sd1.withVAE(Autoencoders.load(folder, for: sd1, includeEncoder: false), name: "tiny/taesd")
        assertImagesMatch(try StableDiffusionPipeline(components: comps)(c.options), try c.expectedImages())
        XCTAssertEqual(try hub.client(cache: cache, offline: true).modelSnapshot(repo: "tiny/taesd"), folder)
        assertError(try hub.client(cache: cache).modelSnapshot(repo: "tiny/taesd", variant: "fp16"), contains: ["tiny/taesd", "fp16"])
        assertError(try hub.client(cache: try temporaryFolder(self)).modelSnapshot(repo: "tiny/sd1"), contains: ["tiny/sd1", "config.json"])
        assertError(try hub.client(cache: try temporaryFolder(self), offline: true).modelSnapshot(repo: "tiny/taesd"),
                    contains: ["tiny/taesd", "HF_HUB_OFFLINE"])
    }

    /// `--controlnet owner/name`: a ControlNet repo fetched into the cache as from_pretrained does, then used
    /// (the picture of the diffusers fixture for the same ControlNet).
    func testControlNetRepoIdOnTheCommandLine() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        let out = try temporaryFolder(self)
        let c = try PipelineCase("cn_sd1_txt2img")
        let png = out.appendingPathComponent("cn.png").path
        let env = ["HF_ENDPOINT": hub.endpoint.absoluteString, "HF_HUB_CACHE": cache.path, "HF_HOME": cache.path]
        let r = try runSD(["txt2img", "--model", TinyModels.sd1.path, "--prompt", c.json["prompt"]?.stringValue ?? "",
                           "--negative-prompt", c.json["negative_prompt"]?.stringValue ?? "", "--steps", "6", "--seed", "91",
                           "--controlnet", "tiny/controlnet:0.8", "--control-image", c.directory.appendingPathComponent("control0.png").path,
                           "--output", png], env: env)
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertPNGMatches(png, c)
        let snapshot = cache.appendingPathComponent("models--tiny--controlnet/snapshots/\(FakeHub.commitControlNet)")
        XCTAssertEqual(filesUnder(snapshot), ["config.json", "diffusion_pytorch_model.safetensors"])
    }

    func testDownloadedSnapshotGeneratesAnImage() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        let seen = LockedBox<[String]>([])
        let folder = try hub.client(cache: cache).snapshot(repo: "tiny/sd1") { p in
            if p.finished { seen.update { $0.append(p.path) } }
            XCTAssertLessThanOrEqual(p.bytes, p.totalBytes ?? .max)
        }
        XCTAssertEqual(Set(seen.value), Set(plainFiles))
        let pipe = try StableDiffusionPipeline(modelDirectory: folder)
        var o = GenerationOptions(prompt: "a red cube")
        o.numInferenceSteps = 2; o.height = 64; o.width = 64; o.seed = 1
        let result = try pipe(o)
        XCTAssertEqual(result.count, 1)
        XCTAssertEqual(try result.rgbImages().first?.width, 64)
    }

    func testCLIDownloadPrintsTheSnapshotPath() throws {
        let hub = try FakeHub(self)
        let cache = try temporaryFolder(self)
        let env = ["HF_ENDPOINT": hub.endpoint.absoluteString, "HF_HUB_CACHE": cache.path, "HF_HOME": cache.path]
        var r = try runSD(["download", "tiny/sd1@v1"], env: env)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, repoFolder(cache).appendingPathComponent("snapshots/\(b)").path + "\n")
        XCTAssertTrue(r.stderr.contains("unet/diffusion_pytorch_model.safetensors"), r.stderr)
        // Cached now: the same path again, and HF_HUB_DISABLE_PROGRESS_BARS keeps stderr empty.
        r = try runSD(["download", "tiny/sd1", "--revision", "v1"], env: env.merging(["HF_HUB_DISABLE_PROGRESS_BARS": "1"]) { $1 })
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, repoFolder(cache).appendingPathComponent("snapshots/\(b)").path + "\n")
        XCTAssertEqual(r.stderr, "")
        r = try runSD(["download", "tiny/sd1", "--revision", "nope"], env: env)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("revision nope not found in repo tiny/sd1"), r.stderr)
        r = try runSD(["download", "tiny/sd1", "--variant", "fp16"], env: env.merging(["HF_HUB_OFFLINE": "1"]) { $1 })
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("HF_HUB_OFFLINE"), r.stderr)
    }

    func runSD(_ args: [String], env: [String: String]) throws -> (status: Int32, stdout: String, stderr: String) {
        guard let sd = SDProcess.executable() else { throw XCTSkip("sd executable not built next to the tests") }
        let p = Process()
        p.executableURL = sd
        p.arguments = args
        // Only what the test gives decides where the cache is (XDG_CACHE_HOME would move it too).
        p.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("HF_") && $0.key != "XDG_CACHE_HOME" }.merging(env) { $1 }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}
