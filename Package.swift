// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "coto",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Numerics", targets: ["Numerics"]),
        .library(name: "Checkpoint", targets: ["Checkpoint"]),
        .library(name: "Operators", targets: ["Operators"]),
        .library(name: "Model", targets: ["Model"]),
        .executable(name: "coto-inspect", targets: ["coto-inspect"]),
        .executable(name: "coto-convert", targets: ["coto-convert"]),
        .executable(name: "coto-merge", targets: ["coto-merge"]),
        .executable(name: "coto-prune", targets: ["coto-prune"]),
        .executable(name: "coto-fuse", targets: ["coto-fuse"]),
        .executable(name: "coto-eval", targets: ["coto-eval"]),
        .executable(name: "coto-train", targets: ["coto-train"]),
        .executable(name: "coto-data", targets: ["coto-data"]),
        .executable(name: "coto-extract", targets: ["coto-extract"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.0.0"),
    ],
    targets: [
        // System libraries (pkg-config).
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CLAPACKE", pkgConfig: "lapacke", providers: [.apt(["liblapacke-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // The one libc call Swift's Glibc module does not expose (sync_file_range).
        .target(name: "CSys"),

        // Tensor, BLAS/LAPACK, dtype codecs, RNG.
        .target(name: "Numerics", dependencies: ["CBLAS", "CLAPACKE", "CSys"]),
        // safetensors, shards, PEFT adapters, HF model dirs, GGUF.
        .target(name: "Checkpoint", dependencies: ["Numerics", "CSys", .product(name: "Crypto", package: "swift-crypto")]),
        // Merge methods (one file each), pruning rules, fuse, low-rank SVD. Never imports a model.
        .target(name: "Operators", dependencies: ["Checkpoint", "Numerics"]),
        // Inference core: architectures, tokenizers, adapters in the forward pass.
        .target(name: "Model", dependencies: ["Checkpoint", "Numerics"]),
        // Backward passes beside their forwards, AdamW, schedules, the CoTo scheduler.
        .target(name: "Training", dependencies: ["Evaluation", "Model", "Checkpoint", "Numerics"]),
        // Tasks, metrics, sweeps and reports.
        .target(name: "Evaluation", dependencies: ["Model", "Operators", "Checkpoint", "Numerics", "CZlib"]),
        // What every coto-* executable shares: errors, exit codes, progress rendering, JSON output.
        .target(
            name: "CotoCLI",
            dependencies: [
                "Checkpoint", "Operators", "Numerics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(name: "coto-inspect", dependencies: ["CotoCLI", "Checkpoint"]),
        .executableTarget(name: "coto-convert", dependencies: ["CotoCLI", "Checkpoint", "Operators", "Numerics"]),
        .executableTarget(name: "coto-extract", dependencies: ["CotoCLI", "Operators", "Checkpoint", "Numerics"]),
        .executableTarget(name: "coto-merge", dependencies: ["CotoCLI", "Evaluation", "Operators", "Checkpoint", "Numerics"]),
        .executableTarget(name: "coto-prune", dependencies: ["CotoCLI", "Operators", "Checkpoint", "Numerics"]),
        .executableTarget(name: "coto-fuse", dependencies: ["CotoCLI", "Operators", "Checkpoint", "Numerics"]),
        .executableTarget(name: "coto-train", dependencies: ["CotoCLI", "Training", "Evaluation", "Model", "Checkpoint", "Numerics"]),
        .executableTarget(name: "coto-eval", dependencies: ["CotoCLI", "Evaluation", "Model", "Operators", "Checkpoint", "Numerics"]),
        .executableTarget(name: "coto-data", dependencies: ["CotoCLI", "Evaluation", "Checkpoint"]),
        .executableTarget(name: "coto-bench", dependencies: ["CotoCLI", "Checkpoint", "Evaluation", "Operators", "Model", "Numerics"]),

        .target(name: "TestSupport", dependencies: ["Numerics"], path: "Tests/TestSupport"),
        .testTarget(
            name: "NumericsTests",
            dependencies: [
                "Numerics", .product(name: "PropertyBased", package: "swift-property-based"),
            ]),
        .testTarget(
            name: "CheckpointTests",
            dependencies: [
                "TestSupport",
                "Checkpoint", "Numerics", .product(name: "PropertyBased", package: "swift-property-based"),
            ], resources: []),
        .testTarget(
            name: "OperatorsTests",
            dependencies: [
                "TestSupport",
                "Operators", "Checkpoint", "Numerics", .product(name: "PropertyBased", package: "swift-property-based"),
            ]),
        .testTarget(name: "ModelTests", dependencies: ["TestSupport", "Model", "Evaluation", "Operators", "Checkpoint", "Numerics"]),
        .testTarget(
            name: "TrainingTests",
            dependencies: [
                "TestSupport", "Training", "Evaluation", "Model", "Checkpoint", "Numerics",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]),
        .testTarget(name: "EvaluationTests", dependencies: ["TestSupport", "Evaluation", "Model", "Operators", "Checkpoint", "Numerics", "CZlib"]),
        .testTarget(name: "CLITests", dependencies: ["TestSupport", "Checkpoint", "Numerics"]),
    ],
    swiftLanguageModes: [.v5]
)
