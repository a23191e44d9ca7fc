import FuzzTargets
import Foundation
import XCTest

/// Replays, through the fuzz targets, every input a fuzzing campaign found crashing the engine
/// (`Fixtures/<target>/`, each fixed since) and every seed of the checked-in corpora (`Fuzz/corpus/<target>/`).
/// A regression traps or trips a bound and takes the test process down, so the failure is the crash itself;
/// the counts check that the inputs were found at all.
final class FuzzReplayTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func inputs(_ folder: URL) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.sorted().filter { !$0.hasPrefix(".") }.map { folder.appendingPathComponent($0) }
    }

    func replay(_ target: FuzzTarget, minimumSeeds: Int = 3) throws {
        let regressions = Self.inputs(Self.repo.appendingPathComponent("Tests/FuzzRegressionTests/Fixtures/\(target.rawValue)"))
        let seeds = Self.inputs(Self.repo.appendingPathComponent("Fuzz/corpus/\(target.rawValue)"))
        XCTAssertGreaterThanOrEqual(seeds.count, minimumSeeds, "seed corpus of \(target.rawValue)")
        for url in regressions + seeds {
            target.run(Array(try Data(contentsOf: url)))
        }
    }

    func testSafeTensors() throws { try replay(.safetensors) }
    func testTorch() throws { try replay(.torch) }
    func testConfig() throws { try replay(.config) }
    func testTokenizer() throws { try replay(.tokenizer) }
    func testImage() throws { try replay(.image) }
    func testDepthMap() throws { try replay(.depthmap) }
    func testAdapters() throws { try replay(.adapters) }
    func testSingleFile() throws { try replay(.singlefile) }
    func testServer() throws { try replay(.server) }

    func testEveryTargetIsReplayed() {
        XCTAssertEqual(FuzzTarget.allCases.count, 9, "a new target needs its replay test above")
    }
}
