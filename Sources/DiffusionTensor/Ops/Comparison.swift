import Foundation

extension Tensor {
    /// `||self - reference|| / ||reference||` (L2 over all elements, in double): how far a reduced-precision
    /// result is from its fp32 reference. Infinity when shapes differ or either holds a NaN.
    public func relativeError(to reference: Tensor) -> Double {
        guard shape == reference.shape else { return .infinity }
        var diff = 0.0, norm = 0.0
        let a = unsafePointer, b = reference.unsafePointer
        for i in 0..<count {
            let d = Double(a[i]) - Double(b[i])
            diff += d * d
            norm += Double(b[i]) * Double(b[i])
        }
        guard !diff.isNaN, !norm.isNaN else { return .infinity }
        return norm == 0 ? (diff == 0 ? 0 : .infinity) : (diff / norm).squareRoot()
    }
}
