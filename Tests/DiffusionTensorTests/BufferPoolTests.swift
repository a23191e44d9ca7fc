import XCTest
import DiffusionTensor

/// The pool of large buffers: freed buffers are reused, and what it keeps never takes the process past
/// the most it ever had in use at once.
final class BufferPoolTests: XCTestCase {
    private let mib = 1 << 20

    private func floats(_ bytes: Int) -> Int { bytes / MemoryLayout<Float>.stride }

    private func assertWithinHighWater(_ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let s = TensorStorage.poolStatistics
        XCTAssertLessThanOrEqual(s.liveBytes + s.keptBytes, s.highWaterBytes, "\(what): \(s)", file: file, line: line)
    }

    func testAFreedBufferOfTheSameSizeIsReused() {
        TensorStorage.releaseCachedBuffers()
        var first: TensorStorage? = TensorStorage(count: floats(16 * mib))
        let address = first!.pointer
        first = nil
        XCTAssertGreaterThanOrEqual(TensorStorage.poolStatistics.keptBytes, 16 * mib)
        let second = TensorStorage(count: floats(16 * mib))
        XCTAssertEqual(second.pointer, address, "the kept 16 MiB buffer was not reused")
        assertWithinHighWater("after reuse")
    }

    func testKeptBuffersNeverRaiseThePeak() {
        TensorStorage.releaseCachedBuffers()
        let base = TensorStorage.poolStatistics
        var a: TensorStorage? = TensorStorage(count: floats(16 * mib))
        var b: TensorStorage? = TensorStorage(count: floats(32 * mib))
        let peak = TensorStorage.poolStatistics.highWaterBytes
        XCTAssertEqual(peak, base.liveBytes + 48 * mib)
        a = nil; b = nil
        XCTAssertEqual(TensorStorage.poolStatistics.keptBytes, 48 * mib)
        // 24 MiB fits no kept buffer: to stay under the peak the pool frees the 32 MiB one (largest first).
        let c = TensorStorage(count: floats(24 * mib))
        var s = TensorStorage.poolStatistics
        XCTAssertEqual(s.highWaterBytes, peak, "a new size raised the high-water mark")
        XCTAssertEqual(s.keptBytes, 16 * mib)
        assertWithinHighWater("after a new size")
        // The 16 MiB one is still there to reuse.
        let d = TensorStorage(count: floats(16 * mib))
        s = TensorStorage.poolStatistics
        XCTAssertEqual(s.keptBytes, 0)
        XCTAssertEqual(s.liveBytes, base.liveBytes + 40 * mib)
        withExtendedLifetime((a, b, c, d)) {}
    }

    func testReleasingCachedBuffersFreesThemAndRestartsTheMark() {
        var big: TensorStorage? = TensorStorage(count: floats(64 * mib))
        big = nil
        withExtendedLifetime(big) {}
        TensorStorage.releaseCachedBuffers()
        let s = TensorStorage.poolStatistics
        XCTAssertEqual(s.keptBytes, 0)
        XCTAssertEqual(s.highWaterBytes, s.liveBytes)
    }

    func testSmallBuffersBypassThePool() {
        TensorStorage.releaseCachedBuffers()
        let before = TensorStorage.poolStatistics
        let small = TensorStorage(count: floats(TensorStorage.pooledMinimumBytes) - 1)
        XCTAssertEqual(TensorStorage.poolStatistics, before)
        withExtendedLifetime(small) {}
    }
}
