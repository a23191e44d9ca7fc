import Foundation
import XCTest
import StableDiffusion

final class ImagingCodecTests: XCTestCase {
    private func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("imaging-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    private func fixtureBytes(_ name: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: FixturePaths.url("imaging/" + name)))
    }

    func testPNGRoundTripWithTextChunks() throws {
        let image = try Image.loadRGB(path: ImagingFixtures.path("rgb8.png"))
        let params = "a photo of a cat\nSteps: 20, Sampler: pndm, CFG scale: 7.5, Seed: 42"
        let unicode = "ünïcødé – 猫"
        let data = try image.pngData(textChunks: [("parameters", params), ("prompt", unicode)])
        XCTAssertEqual(try Image.decode(data: data), image)
        let text = try PNGCodec.textChunks(data)
        XCTAssertEqual(text["parameters"], params)
        XCTAssertEqual(text["prompt"], unicode, "non-Latin-1 text goes into iTXt")
        for channels in [1, 4] {
            let other = image.converted(toChannels: channels)
            XCTAssertEqual(try Image.decode(data: other.pngData()), other)
        }
        XCTAssertThrowsError(try image.pngData(textChunks: [("", "x")]))
        XCTAssertThrowsError(try image.pngData(textChunks: [(String(repeating: "k", count: 80), "x")]))
    }

    func testWritePNGIsAtomic() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let image = try Image(width: 3, height: 2, channels: 3, fill: 200)
        let path = dir.appendingPathComponent("out.png").path
        try image.writePNG(to: path, textChunks: [("parameters", "x")])
        XCTAssertEqual(try Image.load(path: path), image)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.png"], "no temporary file left")
        let missing = dir.appendingPathComponent("no/such/dir/out.png").path
        XCTAssertThrowsError(try image.writePNG(to: missing)) { error in
            XCTAssertTrue("\(error)".contains(missing), "\(error)")
        }
        // A bad text key fails before anything is written.
        let bad = dir.appendingPathComponent("bad.png").path
        XCTAssertThrowsError(try image.writePNG(to: bad, textChunks: [("", "x")]))
        XCTAssertFalse(FileManager.default.fileExists(atPath: bad))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.png"])
    }

    func testUnreadableFilesNameThePath() throws {
        let dir = try tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let missing = dir.appendingPathComponent("missing.png").path
        XCTAssertThrowsError(try Image.load(path: missing)) { XCTAssertTrue("\($0)".contains(missing), "\($0)") }
        XCTAssertThrowsError(try Image.load(path: dir.path)) { XCTAssertTrue("\($0)".contains("not a regular file"), "\($0)") }
        let empty = dir.appendingPathComponent("empty.jpg")
        try Data().write(to: empty)
        XCTAssertThrowsError(try Image.load(path: empty.path)) { XCTAssertTrue("\($0)".contains(empty.path), "\($0)") }
        let text = dir.appendingPathComponent("text.png")
        try Data("hello, not an image".utf8).write(to: text)
        XCTAssertThrowsError(try Image.load(path: text.path)) { XCTAssertTrue("\($0)".contains("not a PNG or JPEG"), "\($0)") }
    }

    func testTruncatedFilesAreErrors() throws {
        for name in ["rgb8.png", "palette.png", "rgb16.png", "baseline.jpg", "progressive.jpg", "gray.jpg", "cmyk.jpg", "exif6.jpg"] {
            let data = try fixtureBytes(name)
            var cut = 0
            while cut < data.count - 1 {
                XCTAssertThrowsError(try Image.decode(data: Array(data.prefix(cut)), file: name), "\(name) cut at \(cut)")
                cut += max(1, data.count / 97)
            }
            // Dropping only the final byte(s) must also fail (PNG IEND CRC / JPEG EOI).
            XCTAssertThrowsError(try Image.decode(data: Array(data.dropLast()), file: name), "\(name) minus 1 byte")
        }
    }

    func testDamagedFilesNeverCrash() throws {
        var rng = SystemRandomNumberGenerator()
        for name in ["rgb8.png", "baseline.jpg", "progressive.jpg", "gray.jpg", "baseline444.jpg"] {
            let data = try fixtureBytes(name)
            var failures = 0
            for trial in 0..<300 {
                var bad = data
                // Damage headers mostly (where libjpeg's fatal errors live), sometimes anywhere.
                let span = trial % 3 == 0 ? bad.count : min(bad.count, 700)
                for _ in 0..<(1 + trial % 4) {
                    bad[Int.random(in: 2..<span, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                do { _ = try Image.decode(data: bad, file: name) } catch { failures += 1 }
            }
            XCTAssertGreaterThan(failures, 0, name)
        }
        // PNG chunk CRCs catch any change in chunk data.
        var png = try fixtureBytes("rgb8.png")
        png[40] ^= 0x10
        XCTAssertThrowsError(try Image.decode(data: png, file: "x.png")) { XCTAssertTrue("\($0)".contains("CRC"), "\($0)") }
    }

    /// libjpeg's fatal errors end the decoding thread; whatever that thread held must still be freed
    /// (a Swift reference held there leaked the decompressor on every such JPEG: 2 GB over 3 M inputs in
    /// the image fuzz target). The fixture passes the engine's own checks and fails inside libjpeg.
    /// Resident memory must stay level over 400 decodes (malloc keeps freed memory resident here, so a
    /// warm heap does not move; Swift cannot call mallinfo).
    func testLibJPEGErrorsLeakNothing() throws {
        #if os(Linux)
        func residentBytes() throws -> Int {
            let statm = try String(contentsOfFile: "/proc/self/statm", encoding: .utf8).split(separator: " ")
            return (Int(statm[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
        }
        let bad = try fixtureBytes("libjpeg-error-undefined-huffman-table.jpg")
        XCTAssertThrowsError(try Image.decode(data: bad, file: "bad.jpg")) {
            XCTAssertTrue("\($0)".contains("Huffman table 0x00 was not defined"), "\($0)")  // libjpeg's own message
        }
        for _ in 0..<40 { _ = try? Image.decode(data: bad, file: "bad.jpg") }  // warm-up
        let before = try residentBytes()
        for _ in 0..<400 { _ = try? Image.decode(data: bad, file: "bad.jpg") }
        let grown = try residentBytes() - before
        // Under AddressSanitizer freed memory waits in its quarantine, so resident memory grows anyway.
        guard dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__asan_init") == nil else { return }
        XCTAssertLessThan(grown, 2 << 20, "resident memory grew \(grown) bytes over 400 failed decodes")
        #endif
    }

    func testEXIFOrientationFollowsPIL() throws {
        let plain = try Image.loadRGB(path: ImagingFixtures.path("baseline444.jpg"))
        XCTAssertEqual([plain.width, plain.height], [23, 17])
        for o in [3, 6, 8] {
            let image = try Image.load(path: ImagingFixtures.path("exif\(o).jpg"))
            XCTAssertEqual(image.width, o == 3 ? 23 : 17, "orientation \(o)")
        }
        XCTAssertEqual(plain.transposed(exifOrientation: 1), plain)
        XCTAssertEqual(plain.transposed(exifOrientation: 6).transposed(exifOrientation: 8), plain)
        XCTAssertEqual(plain.transposed(exifOrientation: 3).transposed(exifOrientation: 3), plain)
    }
}
