/// OpenCV's `cv2.Canny(image, low, high)` (aperture 3, L1 gradient), the edge detector sd-webui-controlnet's
/// `canny` module and the diffusers ControlNet docs run: the same integer Sobel gradients (replicated
/// borders), the same per-pixel choice among colour channels, the same fixed-point non-maximum suppression
/// and 8-connected hysteresis, so the edge maps are bit-identical.
public enum CannyEdges {
    /// An edge map of `image` (1 channel: 0 or 255), the size of the image. A 4-channel image is blended
    /// over white first (the web UI's `HWC3`); gray is used as it is (three equal channels give the same map).
    public static func detect(_ image: Image, low: Double, high: Double) throws -> Image {
        guard low.isFinite, high.isFinite, low >= 0, high >= 0 else {
            throw ImageError.invalidArgument("canny thresholds must be finite numbers >= 0, got \(low) and \(high)")
        }
        let source = image.channels == 4 ? image.hwc3() : image
        let (w, h, cn) = (source.width, source.height, source.channels)
        // cvFloor of each threshold, swapped when given the wrong way round (as OpenCV does).
        var lo = Int(low.rounded(.down)), hi = Int(high.rounded(.down))
        if lo > hi { swap(&lo, &hi) }

        // Sobel dx, dy per channel (CV_16S, BORDER_REPLICATE), then per pixel the channel whose |dx| + |dy| is
        // largest (the first one on ties).
        var dx = [Int32](repeating: 0, count: w * h), dy = dx, mag = dx
        source.pixels.withUnsafeBufferPointer { p in
            for y in 0..<h {
                let ym = max(y - 1, 0), yp = min(y + 1, h - 1)
                for x in 0..<w {
                    let xm = max(x - 1, 0), xp = min(x + 1, w - 1)
                    var best: Int32 = -1, bx: Int32 = 0, by: Int32 = 0
                    for c in 0..<cn {
                        @inline(__always) func v(_ yy: Int, _ xx: Int) -> Int32 { Int32(p[(yy * w + xx) * cn + c]) }
                        let gx = (v(ym, xp) - v(ym, xm)) + 2 * (v(y, xp) - v(y, xm)) + (v(yp, xp) - v(yp, xm))
                        let gy = (v(yp, xm) - v(ym, xm)) + 2 * (v(yp, x) - v(ym, x)) + (v(yp, xp) - v(ym, xp))
                        let n = abs(gx) + abs(gy)
                        if n > best { best = n; bx = gx; by = gy }
                    }
                    dx[y * w + x] = bx; dy[y * w + x] = by; mag[y * w + x] = best
                }
            }
        }
        // Non-maximum suppression along the gradient's direction, with OpenCV's tan(22.5 deg) in 15-bit fixed
        // point; outside the image the magnitude is 0. 0: edge candidate, 1: not an edge, 2: edge.
        let shift: Int64 = 15
        let tg22 = Int64((0.4142135623730950488016887242097 * Double(1 << shift) + 0.5).rounded(.down))
        func m(_ x: Int, _ y: Int) -> Int32 { x < 0 || y < 0 || x >= w || y >= h ? 0 : mag[y * w + x] }
        var map = [UInt8](repeating: 1, count: w * h)
        var stack: [Int] = []
        for y in 0..<h {
            for x in 0..<w {
                let i = y * w + x, v = mag[i]
                guard v > lo else { continue }
                let xs = Int64(dx[i]), ys = Int64(dy[i])
                let ax = abs(xs), ay = abs(ys) << shift
                let tg22x = ax * tg22
                var isMax: Bool
                if ay < tg22x {
                    isMax = v > m(x - 1, y) && v >= m(x + 1, y)
                } else {
                    let tg67x = tg22x + (ax << (shift + 1))
                    if ay > tg67x {
                        isMax = v > m(x, y - 1) && v >= m(x, y + 1)
                    } else {
                        let s = (xs ^ ys) < 0 ? -1 : 1
                        isMax = v > m(x - s, y - 1) && v > m(x + s, y + 1)
                    }
                }
                guard isMax else { continue }
                if v > hi {
                    map[i] = 2
                    stack.append(i)
                } else {
                    map[i] = 0
                }
            }
        }
        // Hysteresis: candidates 8-connected to an edge become edges.
        while let i = stack.popLast() {
            let x = i % w, y = i / w
            for ny in max(y - 1, 0)...min(y + 1, h - 1) {
                for nx in max(x - 1, 0)...min(x + 1, w - 1) where map[ny * w + nx] == 0 {
                    map[ny * w + nx] = 2
                    stack.append(ny * w + nx)
                }
            }
        }
        return Image(unchecked: w, h, 1, map.map { $0 == 2 ? 255 : 0 })
    }
}
