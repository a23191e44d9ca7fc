extension Image {
    /// sd-webui-controlnet's `HWC3`, which every preprocessor starts with: gray becomes three equal channels,
    /// RGBA is blended over white (`color * a + 255 * (1 - a)` in float32, truncated to 8 bits), RGB is kept.
    public func hwc3() -> Image {
        switch channels {
        case 3: return self
        case 1: return Image(unchecked: width, height, 3, pixels.flatMap { [$0, $0, $0] })
        default:
            var out = [UInt8](repeating: 0, count: width * height * 3)
            for p in 0..<(width * height) {
                let alpha = Float(pixels[p * 4 + 3]) / Float(255)
                for c in 0..<3 {
                    let v = Float(pixels[p * 4 + c]) * alpha + Float(255) * (Float(1) - alpha)
                    out[p * 3 + c] = UInt8(min(max(v, 0), 255))
                }
            }
            return Image(unchecked: width, height, 3, out)
        }
    }
}
