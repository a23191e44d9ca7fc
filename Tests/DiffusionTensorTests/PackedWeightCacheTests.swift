import DiffusionTensor
import Foundation
import XCTest

#if os(Linux)  // the cache keeps oneDNN layouts, which only the Linux build has
/// `PackedWeightCache`: the first load writes a layer's packed weights, a later load of the same file maps
/// them (shown by changing the file's values behind an unchanged identity), and a changed file, a damaged
/// cache file or an unusable folder never give wrong weights or a failed load.
final class PackedWeightCacheTests: XCTestCase {
    private var folder: URL!
    private var weights: URL { folder.appendingPathComponent("model.safetensors") }
    private var cache: URL { folder.appendingPathComponent("cache") }

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("packed-cache-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        PackedWeightCache.directory = nil
        if let folder { try? FileManager.default.removeItem(at: folder) }
    }

    private static func random(_ shape: [Int], seed: UInt64) -> Tensor {
        RandomTensorSource(seed: seed, scale: 0.1).makeTensor("t", shape: shape)
    }

    /// Weights from `seed`; the biases (never cached) are always the same.
    private func writeWeights(seed: UInt64, to url: URL? = nil) throws {
        try SafeTensorsWriter.write([
            ("conv.weight", Self.random([32, 16, 3, 3], seed: seed), .float32), ("conv.bias", Self.random([32], seed: 1000), .float32),
            ("proj.weight", Self.random([48, 32], seed: seed + 2), .float32), ("proj.bias", Self.random([48], seed: 1001), .float32),
            ("wide.weight", Self.random([64, 64, 3, 3], seed: seed + 3), .float32), ("wide.bias", Self.random([64], seed: 1002), .float32),
        ], to: (url ?? weights).path)
    }

    /// The outputs of two convolutions (the second Winograd's in bf16) and a linear layer loaded through a reader,
    /// as a model loads them.
    private func outputs(_ precision: ComputePrecision) throws -> (conv: [Float], linear: [Float], relayouts: Int) {
        let reader = WeightReader(try SafeTensorsFile(path: weights.path), precision: precision)
        let conv = try reader.convolution(weight: "conv.weight", shape: [32, 16, 3, 3], bias: reader.tensor("conv.bias", shape: [32]),
                                          stride: 1, padding: .uniform(1))
        let linear = try reader.linear(weight: "proj.weight", out: 48, in: 32, bias: reader.tensor("proj.bias", shape: [48]))
        // 64 channels each way: a bf16 load keeps (and caches) this one in Winograd's transformed form (where the
        // CPU has no AMX tiles: there it runs direct).
        let wide = try reader.convolution(weight: "wide.weight", shape: [64, 64, 3, 3], bias: reader.tensor("wide.bias", shape: [64]),
                                          stride: 1, padding: .uniform(1))
        XCTAssertEqual(wide.algorithm, precision == .bf16 && Conv2D.prefersWinograd(inChannels: 64, outChannels: 64) ? .winograd : .direct)
        try reader.requireAllUsed()
        reader.finishLoading()
        let y = try conv(Self.random([1, 64, 64, 16], seed: 99))
        let w = try wide(Self.random([1, 24, 20, 64], seed: 97))
        let z = try linear(Self.random([77, 32], seed: 98))
        return (y.scalars + w.scalars, z.scalars, conv.weightRelayouts + linear.weightRelayouts + wide.weightRelayouts)
    }

    private func cacheFiles() throws -> [URL] {
        guard FileManager.default.fileExists(atPath: cache.path) else { return [] }
        return try FileManager.default.contentsOfDirectory(at: cache, includingPropertiesForKeys: nil).filter { $0.pathExtension == "sdpw" }
    }

    /// Rewrites the weights file in place with other values, then puts its modification time back: same
    /// path, size, inode and time, so a load that still gives the old outputs read them from the cache.
    private func changeValuesKeepingIdentity(seed: UInt64) throws {
        var st = stat()
        XCTAssertEqual(stat(weights.path, &st), 0)
        let other = folder.appendingPathComponent("other.safetensors")
        let saved = weights
        try writeWeights(seed: seed, to: other)
        let bytes = try Data(contentsOf: other)
        let handle = try FileHandle(forWritingTo: saved)
        try handle.write(contentsOf: bytes)
        try handle.close()
        var times = [st.st_atim, st.st_mtim]
        XCTAssertEqual(utimensat(AT_FDCWD, saved.path, &times, 0), 0)
    }

    func testSecondLoadMapsWhatTheFirstWrote() throws {
        var precisions: [ComputePrecision] = [.fp32]
        if ComputePrecision.bf16.unsupportedReason() == nil { precisions.append(.bf16) }
        for precision in precisions {
            try? FileManager.default.removeItem(at: cache)
            try writeWeights(seed: 1)
            PackedWeightCache.directory = nil
            let plain = try outputs(precision)
            PackedWeightCache.directory = cache
            let first = try outputs(precision)
            XCTAssertTrue(first.conv == plain.conv && first.linear == plain.linear, "\(precision): the cache changed nothing")
            XCTAssertEqual(try cacheFiles().count, 1, "\(precision): one file per source and precision")

            try changeValuesKeepingIdentity(seed: 50)
            let cached = try outputs(precision)
            XCTAssertTrue(cached.conv == plain.conv, "\(precision): the convolution came from the cache")
            if precision == .bf16 {
                XCTAssertTrue(cached.linear == plain.linear, "bf16: the linear layer came from the cache")
            } else {
                XCTAssertTrue(cached.linear != plain.linear, "fp32: linear layers keep the file's tensor, not a packed copy")
            }
            XCTAssertEqual(cached.relayouts, 0, "\(precision): the cached layout fits the call")
        }
    }

    func testChangedFileAndDamagedCacheAreNotUsed() throws {
        try writeWeights(seed: 1)
        PackedWeightCache.directory = cache
        _ = try outputs(.fp32)
        // A new file at the path (another modification time): its own values, and a second cache file.
        try writeWeights(seed: 7)
        let now = Date().addingTimeInterval(5)
        try FileManager.default.setAttributes([.modificationDate: now], ofItemAtPath: weights.path)
        PackedWeightCache.directory = nil
        let fresh = try outputs(.fp32)
        PackedWeightCache.directory = cache
        XCTAssertTrue(try outputs(.fp32).conv == fresh.conv, "the changed file's own values")
        XCTAssertEqual(try cacheFiles().count, 2)

        // Truncated, then foreign bytes: ignored, and written again whole.
        for damage in ["truncate", "garbage"] {
            for file in try cacheFiles() {
                if damage == "truncate" {
                    let handle = try FileHandle(forWritingTo: file)
                    try handle.truncate(atOffset: 5000)
                    try handle.close()
                } else {
                    try Data(repeating: 0x5A, count: 20000).write(to: file)
                }
            }
            XCTAssertTrue(try outputs(.fp32).conv == fresh.conv, "\(damage): the file's own values")
            let sizes = try cacheFiles().map { try FileManager.default.attributesOfItem(atPath: $0.path)[.size] as? Int ?? 0 }
            XCTAssertTrue(sizes.contains { $0 > 20000 }, "\(damage): the current file was written again whole, sizes \(sizes)")
        }
    }

    func testUnusableFolderNeverFailsALoad() throws {
        try writeWeights(seed: 1)
        let notAFolder = folder.appendingPathComponent("file")
        try Data("x".utf8).write(to: notAFolder)
        PackedWeightCache.directory = notAFolder.appendingPathComponent("cache")
        let out = try outputs(.fp32)
        PackedWeightCache.directory = nil
        XCTAssertTrue(try out.conv == outputs(.fp32).conv, "the same values as without a cache")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".tmp") }
        XCTAssertEqual(leftovers, [])
    }

    func testFingerprintIsStableAndHex() {
        XCTAssertEqual(PackedWeightCache.fingerprint(""), "cbf29ce484222325")
        XCTAssertEqual(PackedWeightCache.fingerprint("a"), "af63dc4c8601ec8c")
        XCTAssertNotEqual(PackedWeightCache.fingerprint("ab"), PackedWeightCache.fingerprint("ba"))
    }
}
#endif
