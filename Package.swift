// swift-tools-version:6.0
import PackageDescription

// oneDNN is the CPU engine on Linux; on Apple platforms the same seam uses Accelerate,
// so the CDNNL shim is only a dependency on Linux.
let linuxOnly = TargetDependencyCondition.when(platforms: [.linux] as [Platform])

let package = Package(
    name: "StableDiffusion",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "StableDiffusion", targets: ["StableDiffusion"]),
        .executable(name: "sd", targets: ["sd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CDNNL", path: "Sources/CDNNL",
            providers: [.apt(["libdnnl-dev"]), .brew(["onednn"])]),
        .systemLibrary(
            name: "CImageCodecs", path: "Sources/CImageCodecs",
            providers: [.apt(["libpng-dev", "libjpeg-dev"]), .brew(["libpng", "jpeg-turbo"])]),
        .target(
            name: "DiffusionTensor",
            dependencies: [.target(name: "CDNNL", condition: linuxOnly)]),
        .target(
            name: "StableDiffusion",
            dependencies: ["DiffusionTensor", .target(name: "CImageCodecs", condition: linuxOnly)],
            resources: [.copy("Resources/SingleFileConfigs")]),
        .executableTarget(
            name: "sd",
            dependencies: ["StableDiffusion", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .testTarget(
            name: "DiffusionTensorTests",
            dependencies: ["DiffusionTensor"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "StableDiffusionTests",
            dependencies: ["StableDiffusion"],
            resources: [.copy("Fixtures")]),
    ]
)
