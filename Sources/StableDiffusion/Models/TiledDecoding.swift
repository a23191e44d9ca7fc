import DiffusionTensor

/// Decoding large latents in overlapping tiles, so the VAE decoder's activations (the largest of a run:
/// 128 channels at full output resolution) stay bounded. Tiles overlap by a quarter; where they overlap
/// the later tile fades in linearly over the earlier one (the blending diffusers' `tiled_decode` uses), so
/// no seam shows. GroupNorm statistics are per tile, so the result is close to, not equal to, an untiled
/// decode.
public enum TiledDecoding {
    /// Outputs above this many pixels are decoded in tiles by default (1024 x 1024).
    public static let defaultThresholdPixels = 1024 * 1024
    /// Output tile side in pixels.
    public static let defaultTilePixels = 512
    public static let overlapFraction: Double = 0.25
}

extension AutoencoderKL {
    /// `decode` in tiles of `tilePixels` output pixels (a multiple of the scale factor).
    public func decodeTiled(_ latents: Tensor, tilePixels: Int = TiledDecoding.defaultTilePixels) throws -> Tensor {
        guard latents.rank == 4 else { throw TensorError.shapeMismatch("tiled decode expects NHWC latents, got \(latents.shape)") }
        let f = config.scaleFactor
        guard tilePixels >= 2 * f, tilePixels % f == 0 else {
            throw TensorError.invalidArgument("tile size \(tilePixels) must be a multiple of the VAE scale factor \(f), at least \(2 * f)")
        }
        let tileLatent = tilePixels / f
        let stride = Int(Double(tileLatent) * (1 - TiledDecoding.overlapFraction))
        let blend = Int(Double(tilePixels) * TiledDecoding.overlapFraction)
        let limit = tilePixels - blend
        let (lh, lw) = (latents.shape[1], latents.shape[2])
        var rows: [[Tensor]] = []
        for y in Swift.stride(from: 0, to: lh, by: stride) {
            var row: [Tensor] = []
            for x in Swift.stride(from: 0, to: lw, by: stride) {
                let tile = try latents.slice(axis: 1, y..<min(y + tileLatent, lh)).slice(axis: 2, x..<min(x + tileLatent, lw))
                row.append(try decode(tile))
            }
            rows.append(row)
        }
        var outRows: [Tensor] = []
        for i in rows.indices {
            var pieces: [Tensor] = []
            for j in rows[i].indices {
                var tile = rows[i][j]
                if i > 0 { tile = Self.blendVertical(rows[i - 1][j], tile, extent: blend) }
                if j > 0 { tile = Self.blendHorizontal(rows[i][j - 1], tile, extent: blend) }
                rows[i][j] = tile
                pieces.append(try tile.slice(axis: 1, 0..<min(limit, tile.shape[1])).slice(axis: 2, 0..<min(limit, tile.shape[2])))
            }
            outRows.append(try Tensor.concatenate(pieces, axis: 2))
        }
        return try Tensor.concatenate(outRows, axis: 1)
    }

    /// The top `extent` rows of `b` fade from `a`'s bottom rows into `b`.
    static func blendVertical(_ a: Tensor, _ b: Tensor, extent: Int) -> Tensor {
        let e = min(extent, a.shape[1], b.shape[1])
        var out = b
        let (n, ah, w, c) = (a.shape[0], a.shape[1], min(a.shape[2], b.shape[2]), b.shape[3])
        let (bh, bw, aw) = (b.shape[1], b.shape[2], a.shape[2])
        out.withUnsafeMutableBufferPointer { o in
            a.withUnsafeBufferPointer { ap in
                for s in 0..<n { for y in 0..<e {
                    let t = Float(y) / Float(e)
                    for x in 0..<w { for ch in 0..<c {
                        let bi = ((s * bh + y) * bw + x) * c + ch
                        let ai = ((s * ah + (ah - e + y)) * aw + x) * c + ch
                        o[bi] = ap[ai] * (1 - t) + o[bi] * t
                    } }
                } }
            }
        }
        return out
    }

    /// The left `extent` columns of `b` fade from `a`'s right columns into `b`.
    static func blendHorizontal(_ a: Tensor, _ b: Tensor, extent: Int) -> Tensor {
        let e = min(extent, a.shape[2], b.shape[2])
        var out = b
        let (n, h, c) = (a.shape[0], min(a.shape[1], b.shape[1]), b.shape[3])
        let (ah, aw, bh, bw) = (a.shape[1], a.shape[2], b.shape[1], b.shape[2])
        out.withUnsafeMutableBufferPointer { o in
            a.withUnsafeBufferPointer { ap in
                for s in 0..<n { for y in 0..<h { for x in 0..<e {
                    let t = Float(x) / Float(e)
                    for ch in 0..<c {
                        let bi = ((s * bh + y) * bw + x) * c + ch
                        let ai = ((s * ah + y) * aw + (aw - e + x)) * c + ch
                        o[bi] = ap[ai] * (1 - t) + o[bi] * t
                    }
                } } }
            }
        }
        return out
    }
}
