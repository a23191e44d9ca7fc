/// numpy values as pickles hold them: a dtype is `numpy.dtype(descr, False, True)` plus BUILD state
/// (version, byte order, ...), a scalar is `numpy.core.multiarray.scalar(dtype, raw bytes)`.
enum NumpyPickle {
    /// A bool, int or float where the dtype is one. Anything else (complex, datetime, a malformed
    /// pair) stays an inert placeholder rather than failing the file: numpy scalars in checkpoints are
    /// training metadata (Lightning's best_model_score, a scheduler's last learning rate), not weights.
    static func scalar(_ args: [PickleValue]) -> PickleValue {
        guard args.count == 2, case .object(let dtype) = args[0], dtype.type == "numpy.dtype",
              case .string(let descr)? = dtype.args.first, case .bytes(var raw) = args[1] else {
            return .object(PickleObject(type: "numpy scalar"))
        }
        let inert = PickleValue.object(PickleObject(type: "numpy scalar of dtype '\(descr)'"))
        guard let kind = descr.first, let size = Int(descr.dropFirst()), [1, 2, 4, 8].contains(size), raw.count == size else { return inert }
        if case .tuple(let state)? = dtype.state, state.items.count > 1, case .string(">") = state.items[1] { raw.reverse() }
        var bits: UInt64 = 0
        for (i, b) in raw.enumerated() { bits |= UInt64(b) << (8 * UInt64(i)) }
        let unused = UInt64(64 - 8 * size)
        switch (kind, size) {
        case ("f", 8): return .float(Double(bitPattern: bits))
        case ("f", 4): return .float(Double(Float(bitPattern: UInt32(truncatingIfNeeded: bits))))
        case ("f", 2): return .float(Double(HalfConversion.float(fromHalf: UInt16(truncatingIfNeeded: bits))))
        case ("i", _): return .int(Int(Int64(bitPattern: bits << unused) >> Int64(unused)))
        case ("u", _): return bits <= UInt64(Int.max) ? .int(Int(bits)) : inert
        case ("b", 1): return .bool(bits != 0)
        default: return inert
        }
    }
}
