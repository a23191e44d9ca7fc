import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

import StableDiffusion

/// Scripts/testhub/fake_hub.py serving repos built from Models/tiny-sd1, started per test and always stopped.
final class FakeHub {
    static let commitA = String(repeating: "a", count: 40)
    static let commitB = String(repeating: "b", count: 40)
    static let commitSharded = String(repeating: "c", count: 40)
    static let commitSafety = String(repeating: "d", count: 40)
    static let commitSDXL = String(repeating: "e", count: 40)
    static let commitVAE = String(repeating: "f", count: 40)
    static let commitControlNet = String(repeating: "9", count: 40)
    static let token = "hf_test_token_123"

    let root: URL
    let process = Process()
    private(set) var port = 0
    private(set) var cdnPort = 0
    var endpoint: URL { URL(string: "http://127.0.0.1:\(port)") ?? URL(fileURLWithPath: "/") }

    static var script: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Scripts/testhub/fake_hub.py")
    }

    /// Builds the repos under `root` and starts the server; the test's teardown stops it.
    init(_ test: XCTestCase) throws {
        root = try temporaryFolder(test)
        try Self.makeRepos(root)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.script.path, root.appendingPathComponent("spec.json").path]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        test.addTeardownBlock { [self] in stop() }
        // The two ports come on the first two lines; wait at most 20 s for them.
        let ready = DispatchSemaphore(value: 0)
        let lines = LockedBox<[String]>([])
        let reader = out.fileHandleForReading
        Thread.detachNewThread {
            var text = ""
            while lines.value.count < 2 {
                let d = reader.availableData
                if d.isEmpty { break }
                text += String(decoding: d, as: UTF8.self)
                lines.value = text.split(separator: "\n").map(String.init)
            }
            ready.signal()
        }
        guard ready.wait(timeout: .now() + 20) == .success, lines.value.count >= 2,
              let p = Int(lines.value[0]), let c = Int(lines.value[1]) else {
            stop()
            throw XCTSkip("fake hub did not start (python3 missing?)")
        }
        port = p
        cdnPort = c
    }

    /// SIGTERM, then SIGKILL after 5 s; by pid only.
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    }

    func environment(cache: URL, token: String? = nil, offline: Bool = false) -> HubEnvironment {
        HubEnvironment(endpoint: endpoint, cacheDirectory: cache, token: token, offline: offline, metadataTimeout: 5, downloadTimeout: 5)
    }

    func client(cache: URL, token: String? = nil, offline: Bool = false, retries: Int = 5) throws -> HubClient {
        let c = try HubClient(environment: environment(cache: cache, token: token, offline: offline), maxRetries: retries)
        c.retryDelay = 0.05
        return c
    }

    /// Test knobs: `["drop_after": N, "drop_count": 1]`, `["corrupt_count": 1]`.
    func control(_ knobs: [String: Any]) throws {
        _ = try call("POST", "/_control", body: try JSONSerialization.data(withJSONObject: knobs))
    }

    /// The requests the server has seen.
    func log() throws -> [[String: Any]] {
        (try JSONSerialization.jsonObject(with: call("GET", "/_log")) as? [[String: Any]]) ?? []
    }

    func clearLog() throws { _ = try call("DELETE", "/_log") }

    private func call(_ method: String, _ path: String, body: Data? = nil) throws -> Data {
        var request = URLRequest(url: endpoint.appendingPathComponent(path), timeoutInterval: 10)
        request.httpMethod = method
        request.httpBody = body
        let done = DispatchSemaphore(value: 0)
        let result = LockedBox<Data?>(nil)
        URLSession.shared.dataTask(with: request) { data, _, _ in result.value = data; done.signal() }.resume()
        guard done.wait(timeout: .now() + 15) == .success, let data = result.value else {
            throw XCTSkip("fake hub did not answer \(method) \(path)")
        }
        return data
    }

    // MARK: - repos

    static func makeRepos(_ root: URL) throws {
        let fm = FileManager.default
        func copyTiny(_ name: String) throws -> URL {
            let dst = root.appendingPathComponent(name)
            try fm.copyItem(at: TinyModels.sd1, to: dst)
            return dst
        }
        func write(_ text: String, _ dir: URL, _ path: String) throws {
            let url = dir.appendingPathComponent(path)
            try fm.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url)
        }
        // A: fp16 variant copies, and files a download must skip.
        let a = try copyTiny("A")
        for (dir, stem) in [("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model")] {
            try fm.copyItem(at: a.appendingPathComponent("\(dir)/\(stem).safetensors"), to: a.appendingPathComponent("\(dir)/\(stem).fp16.safetensors"))
        }
        try write("not a checkpoint", a, "v1-5-pruned.ckpt")
        try write("pickle", a, "unet/diffusion_pytorch_model.bin")
        try write("flax", a, "unet/diffusion_flax_model.msgpack")
        try write("onnx", a, "unet/model.onnx")
        try write("# tiny", a, "README.md")
        // B: the plain tiny model (tag v1 and branch dev).
        _ = try copyTiny("B")
        // Sharded text encoder.
        let s = try copyTiny("S")
        try shard(s.appendingPathComponent("text_encoder"))
        // A safety checker, which this engine does not run: its folder must not be downloaded.
        let d = try copyTiny("D")
        try write("{}", d, "safety_checker/config.json")
        try write("weights", d, "safety_checker/model.safetensors")
        try write("{\"crop_size\": 224}", d, "feature_extractor/preprocessor_config.json")
        let indexURL = d.appendingPathComponent("model_index.json")
        var index = try JSONSerialization.jsonObject(with: Data(contentsOf: indexURL)) as? [String: Any] ?? [:]
        index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
        index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
        try JSONSerialization.data(withJSONObject: index, options: [.sortedKeys]).write(to: indexURL)

        // SDXL's layout: text_encoder_2 and tokenizer_2, fp16 variants beside the plain weights, the fp16 UNet
        // sharded, and vae_1_0 (not a component of model_index.json: never downloaded).
        let x = root.appendingPathComponent("X")
        try fm.copyItem(at: TinyModels.sdxl, to: x)
        for (dir, stem) in [("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model"),
                            ("text_encoder_2", "model")] {
            try fm.copyItem(at: x.appendingPathComponent("\(dir)/\(stem).safetensors"), to: x.appendingPathComponent("\(dir)/\(stem).fp16.safetensors"))
        }
        try shard(x.appendingPathComponent("unet"), stem: "diffusion_pytorch_model", infix: ".fp16")
        try fm.createDirectory(at: x.appendingPathComponent("vae_1_0"), withIntermediateDirectories: true)
        for f in ["config.json", "diffusion_pytorch_model.fp16.safetensors"] {
            try fm.copyItem(at: x.appendingPathComponent("vae/" + f), to: x.appendingPathComponent("vae_1_0/" + f))
        }

        // A single-model repo (a VAE: config.json and weights at the top), with a .bin copy that is not fetched.
        let v = root.appendingPathComponent("V")
        try fm.copyItem(at: TinyModels.root.appendingPathComponent("tiny-taesd"), to: v)
        try write("pickle", v, "diffusion_pytorch_model.bin")
        try write("# tiny taesd", v, "README.md")

        // A ControlNet repo (lllyasviel/control_v11p_sd15_canny's layout: config.json and weights at the top).
        let n = root.appendingPathComponent("N")
        try fm.copyItem(at: TinyModels.root.appendingPathComponent("tiny-controlnet-sd1"), to: n)
        try write("# tiny controlnet", n, "README.md")

        func repo(_ commit: String, _ folder: URL, refs: [String: String]) -> [String: Any] {
            ["commits": [commit: folder.path], "refs": refs]
        }
        var gated = repo(commitA, a, refs: ["main": commitA])
        gated["gated_token"] = token
        var tiny: [String: Any] = ["commits": [commitA: a.path, commitB: root.appendingPathComponent("B").path]]
        tiny["refs"] = ["main": commitA, "v1": commitB, "dev": commitB]
        let spec: [String: Any] = ["repos": [
            "tiny/sd1": tiny,
            "tiny/sd1-sharded": repo(commitSharded, s, refs: ["main": commitSharded]),
            "tiny/sd1-safety": repo(commitSafety, d, refs: ["main": commitSafety]),
            "tiny/sdxl": repo(commitSDXL, x, refs: ["main": commitSDXL]),
            "tiny/taesd": repo(commitVAE, v, refs: ["main": commitVAE]),
            "tiny/controlnet": repo(commitControlNet, n, refs: ["main": commitControlNet]),
            "gated/sd1": gated,
            "old/sd1": ["renamed_to": "tiny/sd1"],
        ]]
        try JSONSerialization.data(withJSONObject: spec).write(to: root.appendingPathComponent("spec.json"))
    }

    /// `model.safetensors` -> two shards and `model.safetensors.index.json`, as transformers saves big models
    /// (`stem` "diffusion_pytorch_model" and a variant infix such as ".fp16" for diffusers' sharded UNets).
    static func shard(_ dir: URL, stem: String = "model", infix: String = "") throws {
        let single = dir.appendingPathComponent("\(stem)\(infix).safetensors")
        let file = try SafeTensorsFile(path: single.path)
        let names = file.tensorNames.sorted()
        let halves = [Array(names[..<(names.count / 2)]), Array(names[(names.count / 2)...])]
        var map: [String: String] = [:]
        for (i, half) in halves.enumerated() {
            let shardName = String(format: "\(stem)\(infix)-%05d-of-%05d.safetensors", i + 1, halves.count)
            let entries: [SafeTensorsWriter.Entry] = try half.map { ($0, try file.tensor($0), file.info($0)?.dtype ?? .float32) }
            try SafeTensorsWriter.write(entries, to: dir.appendingPathComponent(shardName).path)
            for n in half { map[n] = shardName }
        }
        let index: [String: Any] = ["metadata": ["total_size": 0], "weight_map": map]
        try JSONSerialization.data(withJSONObject: index, options: [.sortedKeys])
            .write(to: dir.appendingPathComponent("\(stem).safetensors.index\(infix).json"))
        try FileManager.default.removeItem(at: single)
    }
}

final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var _value: T
    init(_ v: T) { _value = v }
    var value: T {
        get { lock.lock(); defer { lock.unlock() }; return _value }
        set { lock.lock(); _value = newValue; lock.unlock() }
    }
    /// Changes the value under one lock: `value.append(x)` is a get then a set, and loses updates
    /// when two threads append at once.
    func update(_ body: (inout T) -> Void) { lock.lock(); body(&_value); lock.unlock() }
}

/// Paths of files under a folder (following the snapshot's symlinks), relative and sorted.
func filesUnder(_ url: URL) -> [String] {
    var out: [String] = []
    guard let e = FileManager.default.enumerator(atPath: url.path) else { return [] }
    while let rel = e.nextObject() as? String {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.appendingPathComponent(rel).path, isDirectory: &isDir), !isDir.boolValue { out.append(rel) }
    }
    return out.sorted()
}
