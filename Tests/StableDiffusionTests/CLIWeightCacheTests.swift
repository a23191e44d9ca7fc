import Foundation
import XCTest
import StableDiffusion

/// `--weight-cache DIR`: the first run writes the models' packed weights there, a second run maps them and
/// draws the same PNG, byte for byte, as a run without the flag; a folder that cannot be made is refused
/// naming the flag, before anything is written.
final class CLIWeightCacheTests: XCTestCase {
    func testSecondRunMapsTheCacheAndDrawsTheSamePicture() throws {
        #if !os(Linux)
        throw XCTSkip("the cache keeps oneDNN layouts, which only the Linux build has")
        #endif
        let out = try temporaryFolder(self)
        let cache = out.appendingPathComponent("weights")
        let precision = ComputePrecision.bf16.unsupportedReason() == nil ? "bf16" : "fp32"
        func run(_ name: String, cached: Bool) throws -> Data {
            let target = out.appendingPathComponent(name)
            let r = try SDProcess.run(["txt2img", "--model", TinyModels.sd1.path, "--prompt", "a cat", "--height", "64", "--width", "64",
                                       "--steps", "2", "--seed", "7", "--precision", precision, "--output", target.path]
                                      + (cached ? ["--weight-cache", cache.path] : []))
            XCTAssertEqual(r.status, 0, r.stderr)
            return try Data(contentsOf: target)
        }
        let plain = try run("plain.png", cached: false)
        XCTAssertFalse(FileManager.default.fileExists(atPath: cache.path))
        XCTAssertEqual(try run("first.png", cached: true), plain)
        let files = filesIn(cache)
        // The UNet and the VAE (and in bf16 the text encoder), one file each.
        XCTAssertGreaterThanOrEqual(files.filter { $0.hasSuffix(".sdpw") }.count, 2, "\(files)")
        XCTAssertEqual(files.filter { !$0.hasSuffix(".sdpw") }, [], "no temporary file left")
        let written = try files.map { try FileManager.default.attributesOfItem(atPath: cache.appendingPathComponent($0).path)[.modificationDate] as? Date }
        XCTAssertEqual(try run("second.png", cached: true), plain)
        let after = try files.map { try FileManager.default.attributesOfItem(atPath: cache.appendingPathComponent($0).path)[.modificationDate] as? Date }
        XCTAssertEqual(filesIn(cache), files, "a hit writes no new file")
        XCTAssertEqual(after, written, "a hit rewrites nothing")
    }

    func testUnusableFolderIsRefusedNamingTheFlag() throws {
        let out = try temporaryFolder(self)
        let notAFolder = out.appendingPathComponent("file")
        try Data("x".utf8).write(to: notAFolder)
        let target = out.appendingPathComponent("x.png")
        let r = try SDProcess.run(["txt2img", "--model", TinyModels.sd1.path, "--prompt", "x", "--steps", "1", "--height", "64",
                                   "--width", "64", "--weight-cache", notAFolder.appendingPathComponent("cache").path, "--output", target.path])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("--weight-cache"), r.stderr)
        XCTAssertEqual(filesIn(out), ["file"])
    }
}
