/// SDXL's size and crop conditioning (diffusers' `original_size`, `crops_coords_top_left`, `target_size`,
/// and the refiner's `aesthetic_score` / `negative_aesthetic_score`). SD 1.x/2.x models take none of it.
public struct MicroConditioning: Sendable, Equatable {
    /// Sizes in pixels as `(height, width)`, diffusers' tuple order; nil: the generated image's size.
    public var originalSize: (height: Int, width: Int)?
    public var targetSize: (height: Int, width: Int)?
    /// diffusers' `crops_coords_top_left` tuple, `(top, left)`.
    public var cropsCoordsTopLeft: (top: Int, left: Int) = (0, 0)
    /// Used instead of the target size by models trained with aesthetic scores (the refiner).
    public var aestheticScore: Double = 6.0
    public var negativeAestheticScore: Double = 2.5

    public init() {}

    public static func == (a: MicroConditioning, b: MicroConditioning) -> Bool {
        a.originalSize.map { [$0.height, $0.width] } == b.originalSize.map { [$0.height, $0.width] }
            && a.targetSize.map { [$0.height, $0.width] } == b.targetSize.map { [$0.height, $0.width] }
            && a.cropsCoordsTopLeft == b.cropsCoordsTopLeft
            && a.aestheticScore == b.aestheticScore && a.negativeAestheticScore == b.negativeAestheticScore
    }

    /// Whether anything differs from the defaults (SD 1.x/2.x models refuse a set value).
    var isDefault: Bool { self == MicroConditioning() }

    /// diffusers' `_get_add_time_ids` for an image of `height` x `width`: positive and negative rows.
    func timeIds(height: Int, width: Int, aestheticScores: Bool) -> (positive: [Float], negative: [Float]) {
        let original = originalSize ?? (height, width), target = targetSize ?? (height, width)
        let head = [original.height, original.width, cropsCoordsTopLeft.top, cropsCoordsTopLeft.left].map(Float.init)
        if aestheticScores {
            return (head + [Float(aestheticScore)], head + [Float(negativeAestheticScore)])
        }
        let ids = head + [Float(target.height), Float(target.width)]
        return (ids, ids)
    }
}
