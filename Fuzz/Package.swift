// swift-tools-version:6.1
import PackageDescription

// libFuzzer driver for the engine's parsers (`FuzzTargets` in the root package). Kept apart so the main
// build and `swift test` never see fuzzer flags. Build with Scripts/fuzz.sh (which adds
// `-sanitize=fuzzer,address`: without it the libFuzzer driver is missing at link time); one binary serves every target, chosen by SD_FUZZ_TARGET.
let package = Package(
    name: "StableDiffusionFuzz",
    platforms: [.macOS(.v13)],
    dependencies: [.package(name: "StableDiffusion", path: "..")],
    targets: [
        .executableTarget(
            name: "sd-fuzz",
            dependencies: [.product(name: "FuzzTargets", package: "StableDiffusion")]),
    ]
)
