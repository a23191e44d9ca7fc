import Foundation

/// Loaders that take paths get the input through one file per name in a per-process folder (in
/// /dev/shm when there is one, so no disk writes), rewritten for every input and removed at exit.
enum ScratchFile {
    nonisolated(unsafe) private static var folder: String?

    static func write(_ data: [UInt8], as name: String) throws -> URL {
        let url = URL(fileURLWithPath: try directory()).appendingPathComponent(name)
        try Data(data).write(to: url)
        return url
    }

    /// A fresh empty folder inside the scratch folder (for loaders that look files up by name).
    static func emptyFolder(_ name: String) throws -> URL {
        let url = URL(fileURLWithPath: try directory()).appendingPathComponent(name)
        try? FileManager.default.removeItem(at: url)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false)
        return url
    }

    private static func directory() throws -> String {
        if let folder { return folder }
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let path = (base as NSString).appendingPathComponent("sd-fuzz-\(getpid())")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        folder = path
        atexit { if let folder = ScratchFile.folder { try? FileManager.default.removeItem(atPath: folder) } }
        return path
    }
}

/// What the leading bytes say a tensor file is, so one corpus mixes formats and mutations can cross them.
enum LeadingBytes {
    static func isTorch(_ d: [UInt8]) -> Bool { d.starts(with: [0x50, 0x4B]) || d.first == 0x80 }
    static func isPNG(_ d: [UInt8]) -> Bool { d.starts(with: [0x89, 0x50, 0x4E, 0x47]) }
    static func isNPY(_ d: [UInt8]) -> Bool { d.starts(with: [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]) }
}
