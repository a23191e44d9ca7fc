import Foundation
import XCTest
import DiffusionTensor

/// Fixture helpers shared by the file-format tests (prefixed to stay clear of other test files).
enum IOFixture {
    static func url(_ name: String) throws -> URL {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil), "Fixtures folder missing")
        return root.appendingPathComponent("io").appendingPathComponent(name)
    }

    static func path(_ name: String) throws -> String { try url(name).path }

    static func json(_ name: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url(name)))
    }

    /// Expected values are float32 bit patterns in hex, so comparisons are bit-exact.
    static func floats(fromHexBits bits: [String]) -> [Float] {
        bits.map { Float(bitPattern: UInt32($0, radix: 16) ?? 0) }
    }

    static func bitsEqual(_ a: [Float], _ b: [Float]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
    }

    /// A fresh empty directory under the system temp folder.
    static func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sd-io-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Deterministic generator for corruption tests (SplitMix64).
    struct Rng {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    }
}

final class SafeTensorsTests: XCTestCase {
    func testReadsPythonWrittenFileBitExactly() throws {
        let file = try SafeTensorsFile(path: IOFixture.path("basic.safetensors"))
        let expected = try XCTUnwrap(IOFixture.json("basic.expected.json") as? [String: Any])
        let tensors = try XCTUnwrap(expected["tensors"] as? [String: [String: Any]])
        XCTAssertEqual(file.metadata, expected["metadata"] as? [String: String])
        XCTAssertEqual(file.tensorNames, tensors.keys.sorted())
        for (name, e) in tensors {
            let info = try XCTUnwrap(file.info(name))
            XCTAssertEqual(info.shape, e["shape"] as? [Int], name)
            XCTAssertEqual(info.dtypeName, e["dtype"] as? String, name)
            let t = try file.tensor(name)
            XCTAssertEqual(t.shape, info.shape, name)
            let want = IOFixture.floats(fromHexBits: try XCTUnwrap(e["bits"] as? [String]))
            XCTAssertTrue(IOFixture.bitsEqual(t.scalars, want), "\(name): \(t.scalars) != \(want)")
        }
        XCTAssertEqual(file.info("b.f16")?.dtype, .float16)
        XCTAssertEqual(file.info("g.i64")?.scalarType, .int64)
        XCTAssertNil(file.info("g.i64")?.dtype)
        XCTAssertNil(file.info("missing"))
        XCTAssertEqual(try file.allTensors().count, tensors.count)
    }

    /// Integer, bool and float8 dtypes convert like torch's `.float()` (float8: all 256 patterns).
    func testOtherDtypesConvertLikeTorch() throws {
        let file = try SafeTensorsFile(path: IOFixture.path("dtypes.safetensors"))
        let expected = try XCTUnwrap(IOFixture.json("dtypes.expected.json") as? [String: [String: Any]])
        XCTAssertEqual(file.tensorNames, expected.keys.sorted())
        for (name, e) in expected {
            let got = try file.tensor(name)
            XCTAssertEqual(got.shape, e["shape"] as? [Int], name)
            let want = IOFixture.floats(fromHexBits: try XCTUnwrap(e["bits"] as? [String]))
            XCTAssertEqual(got.count, want.count, name)
            for (i, (g, w)) in zip(got.scalars, want).enumerated() where !(g.isNaN && w.isNaN) && g.bitPattern != w.bitPattern {
                XCTFail("\(name)[\(i)]: \(g) != \(w)")
            }
        }
    }

    func testRawBytesAreTheStoredBytes() throws {
        let file = try SafeTensorsFile(path: IOFixture.path("basic.safetensors"))
        let info = try XCTUnwrap(file.info("b.f16"))
        let halves: [UInt16] = try file.withRawBytes("b.f16") { raw in
            XCTAssertEqual(raw.count, 10)
            return (0..<5).map { raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self) }
        }
        XCTAssertEqual(halves.map(HalfConversion.float(fromHalf:)), try file.tensor("b.f16").scalars)
        XCTAssertEqual(info.fileRange.count, 10)
        XCTAssertThrowsError(try file.withRawBytes("nope") { _ in 0 })
    }

    func testMalformedFilesAreRejectedNamingFileAndPart() throws {
        let cases: [(String, [String])] = [
            ("bad_json.safetensors", ["not valid JSON"]),
            ("header_past_eof.safetensors", ["header length", "past the end"]),
            ("too_short.safetensors", ["too short"]),
            ("truncated.safetensors", ["tensor 'u'", "outside"]),
            ("offsets_out_of_range.safetensors", ["tensor 't'", "outside"]),
            ("wrong_byte_count.safetensors", ["tensor 't'", "needs 12 bytes"]),
            ("unknown_dtype.safetensors", ["tensor 't'", "unknown dtype 'Q7'"]),
            ("overlap.safetensors", ["overlaps"]),
            ("negative_shape.safetensors", ["tensor 't'", "non-negative"]),
            ("bad_metadata.safetensors", ["__metadata__", "'k'"]),
            ("not_object.safetensors", ["not an object"]),
            ("does_not_exist.safetensors", ["cannot open"]),
        ]
        for (name, fragments) in cases {
            XCTAssertThrowsError(try SafeTensorsFile(path: IOFixture.path(name)), name) { error in
                guard case TensorError.badFile(let file, let detail) = error else {
                    return XCTFail("\(name): unexpected error \(error)")
                }
                XCTAssertTrue(file.hasSuffix(name), "\(name): error names \(file)")
                for f in fragments { XCTAssertTrue(detail.contains(f), "\(name): '\(detail)' lacks '\(f)'") }
            }
        }
    }

    func testListedButUnconvertibleDtypeThrowsNamingTensor() throws {
        let file = try SafeTensorsFile(path: IOFixture.path("complex.safetensors"))
        XCTAssertEqual(file.info("c")?.scalarType, .complex64)
        XCTAssertThrowsError(try file.tensor("c")) { XCTAssertTrue("\($0)".contains("'c'") && "\($0)".contains("C64")) }
        XCTAssertThrowsError(try file.tensor("absent")) { XCTAssertTrue("\($0)".contains("'absent'")) }
    }

    func testWriterMatchesPythonBytes() throws {
        let spec = try XCTUnwrap(IOFixture.json("writer_inputs.json") as? [String: Any])
        let list = try XCTUnwrap(spec["tensors"] as? [[String: Any]])
        var entries: [SafeTensorsWriter.Entry] = []
        for t in list {
            let shape = try XCTUnwrap(t["shape"] as? [Int])
            let values = IOFixture.floats(fromHexBits: try XCTUnwrap(t["bits"] as? [String]))
            let dtype = try XCTUnwrap(DType(rawValue: try XCTUnwrap(t["dtype"] as? String)))
            entries.append((name: try XCTUnwrap(t["name"] as? String), tensor: try Tensor(shape: shape, scalars: values), dtype: dtype))
        }
        let dir = try IOFixture.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out.safetensors")
        try SafeTensorsWriter.write(entries, metadata: try XCTUnwrap(spec["metadata"] as? [String: String]), to: out.path)
        let written = try Data(contentsOf: out)
        let expected = try Data(contentsOf: IOFixture.url("writer_expected.safetensors"))
        XCTAssertEqual(written, expected)
        if written != expected, let n = zip(written, expected).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
            XCTFail("first difference at byte \(n): \(String(decoding: written.prefix(200), as: UTF8.self))")
        }
        // Nothing but the file itself is left in the folder.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.safetensors"])
    }

    func testRoundTripAllDtypes() throws {
        var rng = IOFixture.Rng(state: 7)
        var entries: [SafeTensorsWriter.Entry] = []
        for (i, dtype) in DType.allCases.enumerated() {
            let shape = [2, 3, i + 1]
            let values = (0..<shape.reduce(1, *)).map { _ in Float(Int(rng.below(20001)) - 10000) / 997 }
            entries.append((name: "t\(i).\(dtype.rawValue)", tensor: try Tensor(shape: shape, scalars: values), dtype: dtype))
        }
        entries.append((name: "empty", tensor: Tensor(zeros: [0, 5]), dtype: .float16))
        entries.append((name: "scalar \"quoted\"\n/é", tensor: try Tensor(shape: [], scalars: [2.5]), dtype: .bfloat16))
        let dir = try IOFixture.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("rt.safetensors").path
        try SafeTensorsWriter.write(entries, metadata: ["a": "1", "b": "x\"y"], to: path)
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(file.metadata, ["a": "1", "b": "x\"y"])
        XCTAssertEqual(file.tensorNames, entries.map(\.name).sorted())
        for e in entries {
            let back = try file.tensor(e.name)
            XCTAssertEqual(back.shape, e.tensor.shape)
            let want: [Float] = e.tensor.scalars.map {
                switch e.dtype {
                case .float32: return $0
                case .float16: return HalfConversion.float(fromHalf: HalfConversion.half(fromFloat: $0))
                case .bfloat16: return HalfConversion.float(fromBFloat16: HalfConversion.bfloat16(fromFloat: $0))
                }
            }
            XCTAssertTrue(IOFixture.bitsEqual(back.scalars, want), e.name)
            XCTAssertEqual(file.info(e.name)?.dtype, e.dtype)
        }
        // Header is padded so the data section is 8-byte aligned.
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual(headerLength % 8, 0)
    }

    /// `withTensor` lends an F32 tensor in place (its values are the file's bytes, no copy) and converts the
    /// others exactly as `tensor` does; a bf16 layer built from the lent tensor equals one built from a copy,
    /// and `WeightReader.withTensor` checks names and shapes as `tensor` does.
    func testWithTensorLendsF32InPlaceAndConvertsTheRest() throws {
        let dir = try IOFixture.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("w.safetensors").path
        let w = try Tensor(shape: [3, 4, 3, 3], scalars: (0..<108).map { Float($0) * 0.37 - 20 })
        try SafeTensorsWriter.write([(name: "conv.f32", tensor: w, dtype: .float32), (name: "conv.f16", tensor: w, dtype: .float16)], to: path)
        let file = try SafeTensorsFile(path: path)
        let range = try XCTUnwrap(file.info("conv.f32")).fileRange
        try file.withRawBytes("conv.f32") { raw in
            try file.withTensor("conv.f32") { lent in
                XCTAssertEqual(lent.shape, [3, 4, 3, 3])
                XCTAssertEqual(UnsafeRawPointer(lent.unsafePointer), raw.baseAddress, "an F32 tensor is lent in place")
                XCTAssertTrue(IOFixture.bitsEqual(lent.scalars, w.scalars))
            }
        }
        XCTAssertEqual(range.count, 108 * 4)
        try file.withTensor("conv.f16") { t in XCTAssertTrue(IOFixture.bitsEqual(t.scalars, try file.tensor("conv.f16").scalars)) }
        XCTAssertThrowsError(try file.withTensor("absent") { _ in })

        let reader = WeightReader(file, precision: .fp32)
        XCTAssertThrowsError(try reader.withTensor("conv.f32", shape: [4, 3, 3, 3]) { _ in }) { error in
            XCTAssertTrue("\(error)".contains("conv.f32") && "\(error)".contains("expected [4, 3, 3, 3]"), "\(error)")
        }
        XCTAssertThrowsError(try reader.withTensor("conv.nope", shape: [1]) { _ in })
        XCTAssertEqual(reader.missing, ["conv.nope"])
        try reader.withTensor("conv.f32", shape: [3, 4, 3, 3]) { _ in }
        XCTAssertEqual(reader.unexpected, ["conv.f16"])

        guard (try? ComputePrecision.bf16.checkSupported()) != nil else { return }
        let x = Tensor(repeating: 0.5, shape: [1, 5, 5, 4])
        let copied = try Conv2D(weight: try file.tensor("conv.f32"), bias: nil, padding: .uniform(1), precision: .bf16)
        let lent = try file.withTensor("conv.f32") { try Conv2D(weight: $0, bias: nil, padding: .uniform(1), precision: .bf16) }
        XCTAssertTrue(IOFixture.bitsEqual(try lent(x).scalars, try copied(x).scalars))
    }

    func testWriterLeavesNothingOnFailure() throws {
        let dir = try IOFixture.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let t = try Tensor(shape: [1], scalars: [1])
        let path = dir.appendingPathComponent("x.safetensors").path
        XCTAssertThrowsError(try SafeTensorsWriter.write([(name: "a", tensor: t, dtype: .float32), (name: "a", tensor: t, dtype: .float16)], to: path))
        XCTAssertThrowsError(try SafeTensorsWriter.write([(name: "__metadata__", tensor: t, dtype: .float32)], to: path))
        XCTAssertThrowsError(try SafeTensorsWriter.write([(name: "a", tensor: t, dtype: .float32)],
                                                         to: dir.appendingPathComponent("missing/x.safetensors").path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
        // An existing file is replaced whole.
        try SafeTensorsWriter.write([(name: "a", tensor: t, dtype: .float32)], to: path)
        try SafeTensorsWriter.write([(name: "b", tensor: t, dtype: .float16)], to: path)
        XCTAssertEqual(try SafeTensorsFile(path: path).tensorNames, ["b"])
    }

    /// Every proper prefix of a valid file must be rejected, and random corruption must never crash
    /// or read out of bounds: each attempt either throws or yields tensors of the declared size.
    func testTruncatedAndCorruptedFilesNeverCrash() throws {
        let original = try Data(contentsOf: IOFixture.url("basic.safetensors"))
        let dir = try IOFixture.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("f.safetensors").path
        for length in 0..<original.count {
            try original.prefix(length).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try SafeTensorsFile(path: path), "prefix of \(length) bytes accepted")
        }
        var rng = IOFixture.Rng(state: 42)
        let headerEnd = 8 + original.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        for _ in 0..<1500 {
            var bytes = [UInt8](original)
            let alphabet = Array("0123456789[]{},:\"-e.".utf8)
            for _ in 0..<(1 + rng.below(3)) {
                let at = rng.below(headerEnd)
                bytes[at] = rng.below(4) == 0 ? UInt8(rng.below(256)) : alphabet[rng.below(alphabet.count)]
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            if let file = try? SafeTensorsFile(path: path) {
                for name in file.tensorNames {
                    guard let t = try? file.tensor(name), let info = file.info(name) else { continue }
                    XCTAssertEqual(t.count, info.elementCount)
                    XCTAssertLessThanOrEqual(info.fileRange.upperBound, bytes.count)
                }
            }
        }
    }
}
