import Foundation
import XCTest
import StableDiffusion

/// Runs the built `sd` executable (found next to the test bundle, as `swift build` lays it out).
enum SDProcess {
    static func executable() -> URL? {
        var candidates: [URL] = []
        if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent()) }
        candidates.append(Bundle.main.bundleURL)
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
        for c in Bundle.allBundles.map(\.bundleURL) { candidates.append(c.deletingLastPathComponent()) }
        return candidates.map { $0.appendingPathComponent("sd") }.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    /// Skips the test where `sd` is not built (e.g. `swift test --filter` in a tree that never built it);
    /// CI builds it first.
    static func run(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        guard let sd = executable() else { throw XCTSkip("sd executable not built next to the tests") }
        let process = Process()
        process.executableURL = sd
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }
}

/// A fresh temporary folder, removed at the end of the test.
func temporaryFolder(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("sd-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// File names in a folder (to check that nothing was written).
func filesIn(_ url: URL) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []).sorted()
}

/// A PNG the CLI wrote against image `i` of a parity case: PSNR >= 40 dB and max channel difference <= 16, the
/// pipeline tests' bounds.
func assertPNGMatches(_ path: String, _ c: PipelineCase, image i: Int = 0, file: StaticString = #filePath, line: UInt = #line) throws {
    let (p, m) = psnr(try Image.load(path: path).pixels.map(Float.init), try c.expectedImages()[i].scalars)
    let name = URL(fileURLWithPath: path).lastPathComponent
    XCTAssertGreaterThanOrEqual(p, 40, name, file: file, line: line)
    XCTAssertLessThanOrEqual(m, 16, name, file: file, line: line)
}
