import Foundation
import XCTest
import DiffusionTensor

final class TorchCheckpointTests: XCTestCase {
    private func expected(_ name: String) throws -> [String: [String: Any]] {
        try XCTUnwrap(IOFixture.json(name) as? [String: [String: Any]])
    }

    private func assertMatches(_ t: Tensor, _ e: [String: Any], _ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(t.shape, e["shape"] as? [Int], label, file: file, line: line)
        let want = IOFixture.floats(fromHexBits: try XCTUnwrap(e["bits"] as? [String]))
        XCTAssertTrue(IOFixture.bitsEqual(t.scalars, want), "\(label): \(t.scalars) != \(want)", file: file, line: line)
    }

    private func assertThrows(_ fixture: String, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                              _ body: (String) throws -> Any = { try TorchCheckpoint.load(path: $0) }) throws {
        let path = try IOFixture.path(fixture)
        XCTAssertThrowsError(try body(path), fixture, file: file, line: line) { error in
            guard case TensorError.badFile(let f, let detail) = error else {
                return XCTFail("\(fixture): unexpected error \(error)", file: file, line: line)
            }
            XCTAssertTrue(f.hasSuffix(fixture), "\(fixture): error names \(f)", file: file, line: line)
            for s in fragments { XCTAssertTrue(detail.contains(s), "\(fixture): '\(detail)' lacks '\(s)'", file: file, line: line) }
        }
    }

    func testStateDictMatchesTorchBitExactly() throws {
        let exp = try expected("state_dict.expected.json")
        for fixture in ["state_dict.pt", "state_dict_p4.pt"] {
            let sd = try TorchCheckpoint.loadStateDict(path: IOFixture.path(fixture))
            XCTAssertEqual(Set(sd.keys), Set(exp.keys), fixture)
            for (name, e) in exp { try assertMatches(try XCTUnwrap(sd[name], name), e, "\(fixture) \(name)") }
        }
    }

    func testViewsKeepOffsetsStridesAndSharedStorage() throws {
        let t = try TorchCheckpoint.stateDictTensors(path: IOFixture.path("state_dict.pt"))
        let rows = try XCTUnwrap(t["shared.rows"]), col = try XCTUnwrap(t["shared.col"])
        XCTAssertEqual(rows.storageKey, col.storageKey)
        XCTAssertEqual(rows.storageOffset, 6)
        XCTAssertEqual(col.storageOffset, 2)
        XCTAssertEqual(col.strides, [6])
        XCTAssertTrue(rows.isContiguous)
        XCTAssertFalse(col.isContiguous)
        let tr = try XCTUnwrap(t["transposed"])
        XCTAssertEqual(tr.shape, [5, 3])
        XCTAssertEqual(tr.strides, [1, 5])
        XCTAssertFalse(tr.isContiguous)
        XCTAssertEqual(t["expanded"]?.strides, [1, 0])
        XCTAssertEqual(t["position_ids"]?.scalarType, .int64)
        XCTAssertEqual(t["w.bf16"]?.scalarType, .bfloat16)
        XCTAssertEqual(t["w.f16"]?.scalarType, .float16)
        XCTAssertEqual(t["double"]?.scalarType, .float64)
        XCTAssertEqual(t["scalar"]?.shape, [])
        XCTAssertNotEqual(t["w.f32"]?.storageKey, t["w.f16"]?.storageKey)
    }

    func testLoadKeepsInsertionOrder() throws {
        let root = try TorchCheckpoint.load(path: IOFixture.path("state_dict.pt"))
        let keys = try XCTUnwrap(root.dictEntries).compactMap { $0.key.string }
        XCTAssertEqual(keys, ["w.f32", "w.f16", "w.bf16", "scalar", "shared.rows", "shared.col", "transposed",
                              "expanded", "position_ids", "double", "param"])
    }

    func testNestedCheckpointWithScalars() throws {
        let path = try IOFixture.path("nested.ckpt")
        let root = try TorchCheckpoint.load(path: path)
        XCTAssertEqual(root["epoch"]?.int, 3)
        XCTAssertEqual(root["global_step"]?.int, 123_456_789_012)
        XCTAssertEqual(root["big"]?.int, -(1 << 40))
        XCTAssertEqual(root["lr"]?.double, 0.5)
        XCTAssertEqual(root["name"]?.string, "tiny")
        XCTAssertEqual(root["flag"]?.bool, true)
        XCTAssertEqual(root["nothing"]?.isNone, true)
        XCTAssertEqual(root["steps"]?.elements?.compactMap(\.int), [1, 2, 3])
        if case .tuple(let pair)? = root["pair"] {
            XCTAssertEqual(pair.first?.int, 1)
            XCTAssertEqual(pair.last?.string, "a")
        } else { XCTFail("pair is not a tuple") }
        if case .bytes(let b)? = root["blob"] { XCTAssertEqual(b, [0, 1]) } else { XCTFail("blob is not bytes") }
        XCTAssertNil(root["missing"])

        let exp = try expected("nested.expected.json")
        let sd = try TorchCheckpoint.loadStateDict(path: path)
        XCTAssertEqual(Set(sd.keys), Set(exp.keys))
        for (name, e) in exp { try assertMatches(try XCTUnwrap(sd[name]), e, name) }
    }

    /// The original sd-v1-4.ckpt layout: Lightning's ModelCheckpoint class keys the callback state and
    /// numpy float64 scalars sit in it; they load as an inert placeholder and plain numbers.
    func testSDv14LayoutLoadsWithInertTrainingObjects() throws {
        let path = try IOFixture.path("sd-v1-4-layout.ckpt")
        let root = try TorchCheckpoint.load(path: path)
        XCTAssertEqual(root["global_step"]?.int, 470000)
        XCTAssertEqual(root["pytorch-lightning_version"]?.string, "1.4.2")
        let callback = try XCTUnwrap(root["callbacks"]?.dictEntries?.first)
        if case .opaque(let name) = callback.key {
            XCTAssertEqual(name, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint")
        } else { XCTFail("callback key is \(callback.key)") }
        XCTAssertEqual(callback.value["best_model_score"]?.double, 0.125)
        XCTAssertEqual(callback.value["current_score"]?.double, 0.25)
        XCTAssertEqual(root["lr_schedulers"]?.elements?.first?["_last_lr"]?.elements?.first?.double, 1e-4)
        let sd = try TorchCheckpoint.loadStateDict(path: path)
        XCTAssertEqual(sd.count, 6)
        XCTAssertEqual(sd["model.diffusion_model.time_embed.0.bias"]?.scalars, [0.5, -0.25, 1, 2])
        XCTAssertEqual(sd["model_ema.num_updates"]?.scalars, [470000])
    }

    /// numpy scalars (numpy 1 and numpy 2 spellings) become numbers; arrays and complex scalars placeholders.
    func testNumpyValuesBecomeNumbersOrPlaceholders() throws {
        let root = try TorchCheckpoint.load(path: IOFixture.path("numpy_values.pt"))
        XCTAssertEqual(root["f8"]?.double, 0.125)
        XCTAssertEqual(root["f4"]?.double, 1.5)
        XCTAssertEqual(root["i8"]?.int, -7)
        XCTAssertEqual(root["b1"]?.bool, true)
        XCTAssertEqual(root["be_f8"]?.double, 0.5)
        XCTAssertEqual(root["numpy2_f8"]?.double, 2.5)
        for key in ["c16", "array", "numpy2_array"] {
            if case .opaque(let name)? = root[key] { XCTAssertTrue(name.contains("numpy"), name) } else { XCTFail("\(key): \(String(describing: root[key]))") }
        }
        XCTAssertEqual(try root["weight"]?.tensor?.toTensor().scalars, [1, 2])
    }

    /// Early textual-inversion files keep their vectors in a torch ParameterDict: it reads as a dict of them.
    func testParameterDictReadsAsItsParameters() throws {
        let root = try TorchCheckpoint.load(path: IOFixture.path("parameterdict_embedding.pt"))
        let t = try XCTUnwrap(root["string_to_param"]?["*"]?.tensor)
        XCTAssertEqual(t.shape, [1, 32])
        XCTAssertEqual(try t.toTensor().scalars[2], 0.02, accuracy: 1e-7)
    }

    /// A real-looking embedding with one extra entry whose __reduce__ names a code-execution global:
    /// refused at that GLOBAL opcode, naming the file and the global, in every spelling.
    func testCodeExecutionPayloadsAreRefusedAtTheirGlobal() throws {
        let marker = "/tmp/sd_pickle_fixture_pwned"
        try? FileManager.default.removeItem(atPath: marker)
        for global in ["os.system", "posix.system", "builtins.eval", "builtins.exec", "subprocess.Popen", "__builtin__.getattr"] {
            let fixture = "payload_\(global.replacingOccurrences(of: ".", with: "_")).pt"
            try assertThrows(fixture, ["archive/data.pkl", "opcode GLOBAL", "refused global '\(global)'", "code-execution payload", "nothing was executed"])
            try assertThrows(fixture, ["refused global '\(global)'"]) { try TorchCheckpoint.loadStateDict(path: $0) }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker))
    }

    /// Objects of classes outside the allow-list are refused like any other global, training state included.
    func testForeignClassesAreRefused() throws {
        try assertThrows("lightning.ckpt", ["opcode GLOBAL", "refused global '__main__.ModelCheckpoint'"])
    }

    func testBareTensorAndZip64() throws {
        let e = try XCTUnwrap(IOFixture.json("depth.expected.json") as? [String: Any])
        for fixture in ["depth.pt", "zip64.pt"] {
            let value = try TorchCheckpoint.load(path: IOFixture.path(fixture))
            let t = try XCTUnwrap(value.tensor, fixture)
            XCTAssertEqual(t.scalarType, .float32)
            try assertMatches(try t.toTensor(), e, fixture)
        }
        try assertThrows("depth.pt", ["tensor, not a dict"]) { try TorchCheckpoint.loadStateDict(path: $0) }
    }

    func testStridedViewAndItsBounds() throws {
        let t = try XCTUnwrap(try TorchCheckpoint.load(path: IOFixture.path("crafted_strided.pt")).tensor)
        XCTAssertEqual(try t.toTensor().scalars, [1, 3])
        try assertThrows("crafted_view_oob.pt", ["reaches element 4", "has 4"])
        try assertThrows("crafted_short_storage.pt", ["archive/data/0", "holds 16 bytes"])
        try assertThrows("crafted_huge_expand.pt", ["1099511627776 elements", "too large"])
    }

    func testMaliciousPicklesAreRefusedWithoutExecuting() throws {
        let marker = "/tmp/sd_io_fixture_pwned"
        try? FileManager.default.removeItem(atPath: marker)
        try assertThrows("malicious_system.pt", ["refused global 'posix.system'", "data.pkl"])
        try assertThrows("malicious_eval.pt", ["refused global '__builtin__.eval'"])
        try assertThrows("crafted_stack_global.pt", ["opcode STACK_GLOBAL", "refused global 'os.system'"])
        try assertThrows("crafted_inst.pt", ["INST", "unsupported opcode"])
        try assertThrows("malicious_system.pt", ["posix.system"]) { try TorchCheckpoint.loadStateDict(path: $0) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker))
    }

    func testMalformedArchivesAndPickles() throws {
        try assertThrows("legacy.pt", ["legacy", "not supported"])
        try assertThrows("deflated.pt", ["depth/data.pkl", "deflate"])
        try assertThrows("missing_storage.pt", ["depth/data/0", "missing"])
        try assertThrows("basic.safetensors", ["not a torch checkpoint"])
        try assertThrows("no_such_file.pt", ["cannot open"])
        try assertThrows("crafted_cycle.pt", ["cyclic"])
        // 2^48 nodes by sharing: loads in linear time and memory, since shared objects are converted once.
        var depth = 0
        var node = try TorchCheckpoint.load(path: IOFixture.path("crafted_bomb.pt"))
        while let items = node.elements, let first = items.first { depth += 1; node = first }
        XCTAssertEqual(depth, 48)
        try assertThrows("crafted_dict_bomb.pt", ["more than a million entries"]) { try TorchCheckpoint.loadStateDict(path: $0) }
        try assertThrows("crafted_bad_memo.pt", ["BINGET", "memo index 5"])
        try assertThrows("crafted_no_stop.pt", ["without STOP"])
        try assertThrows("crafted_underflow.pt", ["REDUCE", "underflow"])
    }

    /// Every proper prefix of a checkpoint is refused, and random corruption never crashes: each
    /// attempt either throws or yields tensors that convert.
    func testTruncatedAndCorruptedArchivesNeverCrash() throws {
        let dir = try IOFixture.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("c.pt").path
        let depth = try Data(contentsOf: IOFixture.url("depth.pt"))
        for length in 0..<depth.count {
            try depth.prefix(length).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try TorchCheckpoint.load(path: path), "prefix of \(length) bytes accepted")
        }
        let original = [UInt8](try Data(contentsOf: IOFixture.url("state_dict.pt")))
        var rng = IOFixture.Rng(state: 2024)
        var loaded = 0
        for _ in 0..<1000 {
            var bytes = original
            for _ in 0..<(1 + rng.below(3)) {
                let at = rng.below(bytes.count)
                bytes[at] = rng.below(2) == 0 ? UInt8(rng.below(256)) : bytes[at] ^ UInt8(1 << rng.below(8))
            }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            if let tensors = try? TorchCheckpoint.stateDictTensors(path: path) {
                loaded += 1
                for t in tensors.values { _ = try? t.toTensor() }
            }
        }
        XCTAssertGreaterThan(loaded, 0, "corruption of tensor data alone should still load")
    }
}
