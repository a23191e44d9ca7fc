import Foundation
import StableDiffusion
import XCTest

/// Checks TorchGenerator against torch's own output (Fixtures/random, written by
/// Scripts/reference/gen_random_fixtures.py). Exact equality: the generator must be bit-identical.
final class RandomTests: XCTestCase {
    struct Draw: Decodable { let shape: [Int]; let dtype: String; let offset: Int }
    struct Case: Decodable { let name: String; let seed: UInt64; let draws: [Draw] }
    struct Cases: Decodable { let cases: [Case] }

    static func fixtureURL(_ name: String) throws -> URL {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        return root.appendingPathComponent("random").appendingPathComponent(name)
    }

    static func load<T>(_ name: String, as: T.Type) throws -> [T] {
        let data = try Data(contentsOf: fixtureURL(name))
        return data.withUnsafeBytes { raw in
            (0..<(data.count / MemoryLayout<T>.size)).map { raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) }
        }
    }

    func testRandnMatchesTorch() throws {
        let cases = try JSONDecoder().decode(Cases.self, from: Data(contentsOf: Self.fixtureURL("cases.json"))).cases
        let f32 = try Self.load("values_f32.bin", as: UInt32.self)
        let f64 = try Self.load("values_f64.bin", as: UInt64.self)
        XCTAssertGreaterThan(cases.count, 300)
        var failures = 0
        for c in cases {
            var g = TorchGenerator(seed: c.seed)
            for (k, d) in c.draws.enumerated() {
                let n = d.shape.reduce(1, *)
                if d.dtype == "f64" {
                    let got = g.randnDoubles(count: n).map(\.bitPattern)
                    let want = Array(f64[d.offset..<d.offset + n])
                    if got != want { failures += 1; XCTFail("\(c.name) draw \(k): float64 values differ") }
                } else {
                    let got = try g.randn(shape: d.shape)
                    XCTAssertEqual(got.shape, d.shape)
                    let want = Array(f32[d.offset..<d.offset + n])
                    if got.scalars.map(\.bitPattern) != want {
                        failures += 1
                        let gotBits = got.scalars.map(\.bitPattern)
                        let idx = gotBits.indices.first { gotBits[$0] != want[$0] } ?? -1
                        XCTFail("\(c.name) draw \(k): first difference at \(idx)")
                    }
                }
                if failures > 10 { return }
            }
        }
    }

    func testNHWCHelperPermutesTorchOrder() throws {
        var a = TorchGenerator(seed: 3)
        var b = TorchGenerator(seed: 3)
        let nchw = try a.randn(shape: [2, 4, 3, 5]).scalars
        let nhwc = try b.randnNHWC(batch: 2, channels: 4, height: 3, width: 5)
        XCTAssertEqual(nhwc.shape, [2, 3, 5, 4])
        for n in 0..<2 { for c in 0..<4 { for y in 0..<3 { for x in 0..<5 {
            XCTAssertEqual(nhwc[flat: ((n * 3 + y) * 5 + x) * 4 + c], nchw[((n * 4 + c) * 3 + y) * 5 + x])
        } } } }
        XCTAssertEqual(a, b)
    }

    func testGeneratorListDrawsEachImageFromItsOwnGenerator() throws {
        var list = try RandomGenerators(perImage: [TorchGenerator(seed: 10), TorchGenerator(seed: 11)])
        let both = try list.randn(shape: [2, 4, 2, 3]).scalars
        var g10 = TorchGenerator(seed: 10), g11 = TorchGenerator(seed: 11)
        XCTAssertEqual(both, try g10.randn(shape: [1, 4, 2, 3]).scalars + g11.randn(shape: [1, 4, 2, 3]).scalars)
        XCTAssertThrowsError(try list.randn(shape: [3, 4, 2, 3]))
        var single = RandomGenerators(seed: 10)
        var g = TorchGenerator(seed: 10)
        XCTAssertEqual(try single.randn(shape: [2, 4, 2, 3]).scalars, try g.randn(shape: [2, 4, 2, 3]).scalars)
        XCTAssertThrowsError(try RandomGenerators(perImage: []))
    }

    func testManualSeedResetsStateAndCache() throws {
        var g = TorchGenerator(seed: 5)
        let first = g.randnDoubles(count: 1)
        g.manualSeed(5)
        XCTAssertEqual(g.randnDoubles(count: 1), first)
        XCTAssertEqual(g.initialSeed, 5)
    }
}
