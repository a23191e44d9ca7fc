#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
#if canImport(CImageCodecs)
import CImageCodecs
#endif

/// JPEG decoding (baseline, extended sequential and progressive Huffman JPEGs; 1, 3 or 4 components).
///
/// libjpeg reports fatal errors through `error_exit`, which must not return and cannot `longjmp` into
/// Swift. So every condition libjpeg(-turbo 2.x) treats as fatal is checked first by `JPEGStructure`
/// (markers, segment lengths, tables, frame and scan parameters, the end of the data): input that passes
/// decodes without a fatal error. As a second line, libjpeg runs on its own thread and a fatal error
/// that still happens ends only that thread (`pthread_exit`), which is reported as a thrown error.
/// Damaged entropy-coded data is only a libjpeg warning (decoded as best it can, as PIL does).
public enum JPEGCodec {
    /// Largest pixel count decoded: bounds libjpeg's allocations on hostile headers (CMYK is 4 bytes a pixel
    /// there, then 3 more for RGB), as for every image format.
    public static let maxPixels = Image.maxPixels

    public static func decode(_ data: [UInt8], file: String = "<memory>") throws -> Image {
        let structure = try JPEGStructure(data, file: file)
        #if canImport(CImageCodecs)
        let raw = try data.withUnsafeBytes { try LibJPEGDecoder.decode($0, file: file, components: structure.components) }
        #elseif canImport(ImageIO)
        return try AppleImageIO.decode(data, file: file)
        #else
        throw ImageError.unsupportedFormat(file: file, detail: "no JPEG codec on this platform")
        #endif
        #if canImport(CImageCodecs)
        guard raw.width == structure.width, raw.height == structure.height else {
            throw ImageError.malformed(file: file, detail: "decoded size \(raw.width)x\(raw.height) differs from the header")
        }
        if structure.components == 4 {
            return Image(unchecked: raw.width, raw.height, 3, cmykToRGB(raw.pixels, adobe: structure.adobe))
        }
        return Image(unchecked: raw.width, raw.height, structure.components, raw.pixels)
        #endif
    }

    /// PIL's CMYK handling: Adobe files are read inverted ("CMYK;I"), then `convert("RGB")` computes
    /// `nk - nk*c/255` per channel with `nk = 255 - k` and PIL's rounded division by 255.
    static func cmykToRGB(_ px: [UInt8], adobe: Bool) -> [UInt8] {
        let n = px.count / 4
        var out = [UInt8](repeating: 0, count: n * 3)
        for i in 0..<n {
            var cmyk = (Int(px[4 * i]), Int(px[4 * i + 1]), Int(px[4 * i + 2]), Int(px[4 * i + 3]))
            if adobe { cmyk = (255 - cmyk.0, 255 - cmyk.1, 255 - cmyk.2, 255 - cmyk.3) }
            let nk = 255 - cmyk.3
            for (j, c) in [cmyk.0, cmyk.1, cmyk.2].enumerated() {
                out[3 * i + j] = UInt8(clamping: nk - Imaging.mulDiv255(c, nk))
            }
        }
        return out
    }

    /// Orientation from the first APP1 "Exif" segment.
    static func exifOrientation(_ data: [UInt8]) -> Int? {
        var pos = 2
        while pos + 4 <= data.count, data[pos] == 0xFF {
            let m = data[pos + 1]
            if m == 0xDA || m == 0xD9 { return nil }
            let len = Int(data[pos + 2]) << 8 | Int(data[pos + 3])
            guard len >= 2, pos + 2 + len <= data.count else { return nil }
            let body = data[(pos + 4)..<(pos + 2 + len)]
            if m == 0xE1, body.starts(with: [0x45, 0x78, 0x69, 0x66, 0, 0]) {
                return EXIF.orientation(tiff: body.dropFirst(6))
            }
            pos += 2 + len
        }
        return nil
    }
}

/// Walks a JPEG's marker structure and checks everything libjpeg-turbo would stop on with a fatal error.
struct JPEGStructure {
    var width = 0, height = 0, components = 0
    var adobe = false

    init(_ d: [UInt8], file: String) throws {
        func bad(_ s: String) -> ImageError { .malformed(file: file, detail: "JPEG: " + s) }
        func cut(_ s: String) -> ImageError { .truncated(file: file, detail: "JPEG: " + s) }
        guard d.count >= 4, d[0] == 0xFF, d[1] == 0xD8 else { throw ImageError.unsupportedFormat(file: file, detail: "not a JPEG (no SOI marker)") }

        struct Comp { let id: UInt8; let h: Int; let v: Int; let tq: Int }
        var comps: [Comp] = []
        var progressive = false
        var quant = [Bool](repeating: false, count: 4)
        var dcTables = [Bool](repeating: false, count: 4), acTables = [Bool](repeating: false, count: 4)
        var dcSymbolsOK = [Bool](repeating: true, count: 4)
        // libjpeg-turbo supplies the standard tables for slots 0 and 1 when a file omits them (Motion-JPEG).
        dcTables[0] = true; dcTables[1] = true; acTables[0] = true; acTables[1] = true
        var scans = 0
        var pos = 2

        while true {
            guard pos < d.count else { throw cut("ends before the EOI marker") }
            guard d[pos] == 0xFF else { throw bad("expected a marker at byte \(pos)") }
            while pos < d.count, d[pos] == 0xFF { pos += 1 }  // fill bytes
            guard pos < d.count else { throw cut("ends inside a marker") }
            let m = d[pos]
            pos += 1
            if m == 0xD9 { break }                                       // EOI
            if (0xD0...0xD7).contains(m) || m == 0x01 { continue }       // parameterless
            guard m != 0xD8 else { throw bad("duplicate SOI marker") }
            guard pos + 2 <= d.count else { throw cut("ends inside a segment length") }
            let len = Int(d[pos]) << 8 | Int(d[pos + 1])
            guard len >= 2 else { throw bad("segment length \(len) at byte \(pos)") }
            guard pos + len <= d.count else { throw cut("segment 0x\(String(m, radix: 16)) runs past the end") }
            let s = Array(d[(pos + 2)..<(pos + len)])
            pos += len
            switch m {
            case 0xC0, 0xC1, 0xC2:
                guard comps.isEmpty else { throw bad("more than one frame header") }
                guard s.count >= 6 else { throw bad("short frame header") }
                guard s[0] == 8 else { throw ImageError.unsupportedFormat(file: file, detail: "JPEG sample precision \(s[0]) (only 8-bit is supported)") }
                height = Int(s[1]) << 8 | Int(s[2]); width = Int(s[3]) << 8 | Int(s[4])
                let n = Int(s[5])
                guard s.count == 6 + 3 * n else { throw bad("frame header length does not match \(n) components") }
                guard height > 0, width > 0 else { throw ImageError.badDimensions(file: file, detail: "JPEG frame is \(width)x\(height) (a DNL height is not supported)") }
                guard width * height <= JPEGCodec.maxPixels, width <= Image.maxDimension, height <= Image.maxDimension else {
                    throw ImageError.badDimensions(file: file, detail: "JPEG is \(width)x\(height), too large")
                }
                guard n == 1 || n == 3 || n == 4 else { throw ImageError.unsupportedFormat(file: file, detail: "JPEG with \(n) components") }
                for k in 0..<n {
                    let c = Comp(id: s[6 + 3 * k], h: Int(s[7 + 3 * k] >> 4), v: Int(s[7 + 3 * k] & 15), tq: Int(s[8 + 3 * k]))
                    guard (1...4).contains(c.h), (1...4).contains(c.v) else { throw bad("sampling factors \(c.h)x\(c.v)") }
                    guard c.tq < 4 else { throw bad("quantization table \(c.tq)") }
                    guard !comps.contains(where: { $0.id == c.id }) else { throw bad("duplicate component id \(c.id)") }
                    comps.append(c)
                }
                let maxH = comps.map(\.h).max() ?? 1, maxV = comps.map(\.v).max() ?? 1
                // libjpeg upsamples only by integer ratios.
                guard comps.allSatisfy({ maxH % $0.h == 0 && maxV % $0.v == 0 }) else {
                    throw ImageError.unsupportedFormat(file: file, detail: "JPEG with fractional chroma sampling")
                }
                components = n
                progressive = m == 0xC2
            case 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF:
                throw ImageError.unsupportedFormat(file: file, detail: "lossless, hierarchical or arithmetic-coded JPEG")
            case 0xCC:
                throw ImageError.unsupportedFormat(file: file, detail: "arithmetic-coded JPEG")
            case 0xC4:
                var i = 0
                while i < s.count {
                    let tc = Int(s[i] >> 4), th = Int(s[i] & 15)
                    guard tc <= 1, th < 4 else { throw bad("Huffman table class \(tc) slot \(th)") }
                    guard i + 17 <= s.count else { throw bad("short Huffman table") }
                    let bits = Array(s[(i + 1)..<(i + 17)]).map(Int.init)
                    let count = bits.reduce(0, +)
                    guard count <= 256, i + 17 + count <= s.count else { throw bad("Huffman table with \(count) symbols") }
                    // Canonical code assignment as libjpeg checks it: no length may overflow its code space.
                    var code = 0
                    for l in 1...16 {
                        code += bits[l - 1]
                        guard code < (1 << l) else { throw bad("over-subscribed Huffman table") }
                        code <<= 1
                    }
                    let symbols = s[(i + 17)..<(i + 17 + count)]
                    if tc == 0 { dcTables[th] = true; dcSymbolsOK[th] = symbols.allSatisfy { $0 <= 15 } } else { acTables[th] = true }
                    i += 17 + count
                }
            case 0xDB:
                var i = 0
                var remaining = s.count
                while remaining > 0 {
                    let pq = Int(s[i] >> 4), tq = Int(s[i] & 15)
                    remaining -= 1; i += 1
                    guard tq < 4, pq <= 1 else { throw bad("quantization table slot \(tq) precision \(pq)") }
                    // Mirrors libjpeg: a short last table is padded, never an error by itself.
                    let count = remaining < 64 * (pq + 1) ? remaining >> pq : 64
                    remaining -= count * (pq + 1); i += count * (pq + 1)
                    quant[tq] = true
                }
                guard remaining == 0 else { throw bad("quantization segment length") }
            case 0xDD:
                guard s.count == 2 else { throw bad("restart interval segment length") }
            case 0xDA:
                guard !comps.isEmpty else { throw bad("scan before the frame header") }
                guard let n = s.first.map(Int.init), (1...4).contains(n), s.count == 4 + 2 * n else { throw bad("scan header length") }
                var seen: [UInt8] = []
                var blocks = 0
                let ss = Int(s[1 + 2 * n]), se = Int(s[2 + 2 * n]), ah = Int(s[3 + 2 * n] >> 4), al = Int(s[3 + 2 * n] & 15)
                for k in 0..<n {
                    let id = s[1 + 2 * k], td = Int(s[2 + 2 * k] >> 4), ta = Int(s[2 + 2 * k] & 15)
                    guard let c = comps.first(where: { $0.id == id }), !seen.contains(id) else { throw bad("scan names component \(id)") }
                    seen.append(id)
                    blocks += n == 1 ? 1 : c.h * c.v
                    guard quant[c.tq] else { throw bad("quantization table \(c.tq) is not defined") }
                    let needDC = !progressive || (ss == 0 && ah == 0)
                    let needAC = !progressive || ss != 0
                    if needDC { guard td < 4, dcTables[td], dcSymbolsOK[td] else { throw bad("DC Huffman table \(td) missing or invalid") } }
                    if needAC { guard ta < 4, acTables[ta] else { throw bad("AC Huffman table \(ta) missing") } }
                }
                guard blocks <= 10 else { throw bad("too many blocks per MCU") }
                if progressive {
                    var ok = ss == 0 ? se == 0 : (ss <= se && se < 64 && n == 1)
                    if ah != 0 && al != ah - 1 { ok = false }
                    if al > 13 { ok = false }
                    guard ok else { throw bad("invalid progression parameters") }
                }
                scans += 1
                // Skip entropy-coded data: stuffed 0xFF00 and restart markers stay inside the scan.
                while true {
                    guard pos + 1 < d.count else { throw cut("ends inside scan \(scans)") }
                    if d[pos] != 0xFF { pos += 1; continue }
                    let next = d[pos + 1]
                    if next == 0 || (0xD0...0xD7).contains(next) { pos += 2; continue }
                    if next == 0xFF { pos += 1; continue }
                    break
                }
            case 0xE0...0xEF, 0xFE, 0xDC:
                if m == 0xEE, s.starts(with: Array("Adobe".utf8)) { adobe = true }
            default:
                throw bad("unknown marker 0xFF\(String(m, radix: 16, uppercase: true))")
            }
        }
        guard !comps.isEmpty, scans > 0 else { throw bad("no image data before EOI") }
    }
}

#if canImport(CImageCodecs)
/// What went wrong on the decoding thread (a trivial value: see `JPEGState`).
private enum JPEGProblem {
    case libjpeg, components(Int), noScanline
}

/// State shared with the decoding thread. libjpeg's errors end that thread with `pthread_exit`, which
/// skips Swift's releases, so the thread holds no Swift reference and allocates no Swift memory: it only
/// touches this struct's trivial fields and buffers, which the caller's `JPEGJob` owns and frees
/// (a class read from the thread leaked itself and the whole decompressor on every corrupt JPEG).
private struct JPEGState {
    let input: UnsafeRawBufferPointer
    let outputComponents: Int
    let cinfo: UnsafeMutablePointer<jpeg_decompress_struct>
    let jerr: UnsafeMutablePointer<jpeg_error_mgr>
    /// error_exit's message (NUL-terminated).
    let message: UnsafeMutablePointer<CChar>
    var output: UnsafeMutablePointer<UInt8>?
    var width = 0, height = 0
    var created = false
    var problem: JPEGProblem?
    var finished = false
}

/// Owns a `JPEGState` and everything it points to; outlives the decoding thread.
private final class JPEGJob {
    let state = UnsafeMutablePointer<JPEGState>.allocate(capacity: 1)

    init(input: UnsafeRawBufferPointer, outputComponents: Int) {
        let cinfo = UnsafeMutablePointer<jpeg_decompress_struct>.allocate(capacity: 1)
        cinfo.initialize(to: jpeg_decompress_struct())
        let jerr = UnsafeMutablePointer<jpeg_error_mgr>.allocate(capacity: 1)
        jerr.initialize(to: jpeg_error_mgr())
        let message = UnsafeMutablePointer<CChar>.allocate(capacity: Int(JMSG_LENGTH_MAX))
        message.initialize(repeating: 0, count: Int(JMSG_LENGTH_MAX))
        state.initialize(to: JPEGState(input: input, outputComponents: outputComponents, cinfo: cinfo, jerr: jerr, message: message))
    }

    /// Why decoding failed, or nil when it finished.
    var failure: String? {
        let s = state.pointee
        switch s.problem {
        case .libjpeg: return String(cString: s.message)
        case .components(let c): return "libjpeg produced \(c) components"
        case .noScanline: return "libjpeg returned no scanline"
        case nil: return s.finished && s.output != nil ? nil : "decoding failed"
        }
    }

    deinit {
        let s = state.pointee
        if s.created { jpeg_destroy_decompress(s.cinfo) }
        s.cinfo.deallocate()
        s.jerr.deallocate()
        s.message.deallocate()
        s.output?.deallocate()
        state.deinitialize(count: 1)
        state.deallocate()
    }
}

private func jpegErrorExit(_ cinfo: j_common_ptr?) {
    guard let cinfo, let clientData = cinfo.pointee.client_data else { pthread_exit(nil) }
    let state = clientData.assumingMemoryBound(to: JPEGState.self)
    cinfo.pointee.err.pointee.format_message(cinfo, state.pointee.message)
    state.pointee.problem = .libjpeg
    // libjpeg's contract: error_exit must not return. Ending this (dedicated) thread unwinds its C
    // frames; the caller destroys the decompressor afterwards, as a setjmp handler would.
    pthread_exit(nil)
}

private func jpegDecodeThread(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let arg else { return nil }
    let state = arg.assumingMemoryBound(to: JPEGState.self)
    let cinfo = state.pointee.cinfo
    cinfo.pointee.err = jpeg_std_error(state.pointee.jerr)
    state.pointee.jerr.pointee.error_exit = { jpegErrorExit($0) }
    state.pointee.jerr.pointee.output_message = { _ in }  // warnings (corrupt data) are not printed, as in PIL
    jpeg_CreateDecompress(cinfo, JPEG_LIB_VERSION, MemoryLayout<jpeg_decompress_struct>.size)
    state.pointee.created = true
    cinfo.pointee.client_data = arg
    let input = state.pointee.input
    jpeg_mem_src(cinfo, input.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt(input.count))
    _ = jpeg_read_header(cinfo, 1)
    switch state.pointee.outputComponents {
    case 1: cinfo.pointee.out_color_space = JCS_GRAYSCALE
    case 4: cinfo.pointee.out_color_space = JCS_CMYK
    default: cinfo.pointee.out_color_space = JCS_RGB
    }
    cinfo.pointee.dct_method = JDCT_ISLOW
    cinfo.pointee.do_fancy_upsampling = 1
    _ = jpeg_start_decompress(cinfo)
    let w = Int(cinfo.pointee.output_width), h = Int(cinfo.pointee.output_height)
    let c = Int(cinfo.pointee.output_components)
    guard c == state.pointee.outputComponents, w > 0, h > 0 else {
        state.pointee.problem = .components(c)
        return nil
    }
    let out = UnsafeMutablePointer<UInt8>.allocate(capacity: w * h * c)
    state.pointee.output = out
    state.pointee.width = w; state.pointee.height = h
    while cinfo.pointee.output_scanline < cinfo.pointee.output_height {
        var row: JSAMPROW? = out + Int(cinfo.pointee.output_scanline) * w * c
        if jpeg_read_scanlines(cinfo, &row, 1) != 1 { state.pointee.problem = .noScanline; return nil }
    }
    _ = jpeg_finish_decompress(cinfo)
    state.pointee.finished = true
    return nil
}

enum LibJPEGDecoder {
    static func decode(_ input: UnsafeRawBufferPointer, file: String, components: Int) throws -> Image {
        let job = JPEGJob(input: input, outputComponents: components)
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { jpegDecodeThread($0) }, UnsafeMutableRawPointer(job.state))
        guard rc == 0 else { throw ImageError.unreadable(file: file, detail: "cannot start the JPEG decoder thread (\(rc))") }
        pthread_join(thread, nil)
        // The job owns the pixels read below: it must live until they are copied.
        return try withExtendedLifetime(job) {
            let s = job.state.pointee
            guard let out = s.output, job.failure == nil else {
                throw ImageError.malformed(file: file, detail: "JPEG: " + (job.failure ?? "decoding failed"))
            }
            let count = s.width * s.height * components
            return Image(unchecked: s.width, s.height, components, Array(UnsafeBufferPointer(start: out, count: count)))
        }
    }
}
#endif
