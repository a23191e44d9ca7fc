import XCTest
import StableDiffusion

final class SmokeTests: XCTestCase {
    func testLibraryLinksTensorLayer() {
        XCTAssertEqual(Tensor(zeros: [1, 2]).count, 2)
    }
}
