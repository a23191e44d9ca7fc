import Foundation

/// SwiftPM resource bundles found without `Bundle.module`, which on Linux calls fatalError when the bundle
/// is gone (e.g. an `sd` binary copied away from its build folder): a missing bundle must be an error the
/// caller can report.
public enum ResourceBundles {
    /// `resource` inside the bundle folder `bundle` (`<Package>_<Target>.resources`), looked for where SwiftPM
    /// puts it: beside the executable (followed through links) or the main bundle.
    public static func linuxFolder(bundle: String, resource: String) -> URL? {
        var places = [Bundle.main.bundleURL]
        if let exe = Bundle.main.executableURL {
            places += [exe.deletingLastPathComponent(), exe.resolvingSymlinksInPath().deletingLastPathComponent()]
        }
        for place in places {
            let url = place.appendingPathComponent(bundle).appendingPathComponent(resource)
            if FileManager.default.fileExists(atPath: url.path) { return url }
        }
        return nil
    }
}
