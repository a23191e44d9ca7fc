// swift-tools-version:6.1
import PackageDescription

// oneDNN is the CPU engine on Linux; on Apple platforms the same seam uses Accelerate,
// so the CDNNL shim is only a dependency on Linux.
let linuxOnly = TargetDependencyCondition.when(platforms: [.linux] as [Platform])

let package = Package(
    name: "StableDiffusion",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "StableDiffusion", targets: ["StableDiffusion"]),
        .library(name: "StableDiffusionServer", targets: ["StableDiffusionServer"]),
        .executable(name: "sd", targets: ["sd"]),
        // The parser entry points as fuzz targets, for the libFuzzer driver in Fuzz/ (a separate package).
        .library(name: "FuzzTargets", targets: ["FuzzTargets"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `sd serve`. Hummingbird's default traits are off: they would build swift-configuration, unused here.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0", traits: []),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        // The server's connection handling (timeouts, connection cap) works at the NIO channel level; these
        // come with Hummingbird already and are named so that the imports are declared, not incidental.
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.34.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        // The shared job queue of `sd serve --queue` and `sd worker` (docs/SCALING.md).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),  // TLS to PostgreSQL (sslmode=require)
    ],
    targets: [
        .systemLibrary(
            name: "CDNNL", path: "Sources/CDNNL",
            providers: [.apt(["libdnnl-dev"]), .brew(["onednn"])]),
        .systemLibrary(
            name: "CImageCodecs", path: "Sources/CImageCodecs",
            providers: [.apt(["libpng-dev", "libjpeg-dev"]), .brew(["libpng", "jpeg-turbo"])]),
        // AVX-512 element-wise kernels chosen at run time (function target attributes: no compiler flags).
        .target(name: "CKernels", path: "Sources/CKernels"),
        .target(
            name: "DiffusionTensor",
            dependencies: ["CKernels", .target(name: "CDNNL", condition: linuxOnly)]),
        .target(
            name: "StableDiffusion",
            dependencies: ["DiffusionTensor", .target(name: "CImageCodecs", condition: linuxOnly)],
            resources: [.copy("Resources/SingleFileConfigs")]),
        .target(
            name: "StableDiffusionServer",
            dependencies: [
                "StableDiffusion", "DiffusionTensor",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            resources: [.copy("Web")]),
        .executableTarget(
            name: "sd",
            dependencies: ["StableDiffusion", "StableDiffusionServer",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "FuzzTargets",
            dependencies: ["StableDiffusion", "StableDiffusionServer", "DiffusionTensor",
                           .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "DiffusionTensorTests",
            dependencies: ["DiffusionTensor"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "StableDiffusionTests",
            dependencies: ["StableDiffusion"],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "StableDiffusionServerTests",
            dependencies: ["StableDiffusionServer", "StableDiffusion"]),
        .testTarget(
            name: "FuzzRegressionTests",
            dependencies: ["FuzzTargets"],
            exclude: ["Fixtures"]),  // read from the source tree, beside the checked-in corpora
    ]
)
