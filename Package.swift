// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Vigil",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "vigil", targets: ["vigil"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.81.0"),
    ],
    targets: [
        // JSON scanning, the JSON Schema subset the contracts use, the streaming event validator, time.
        .target(name: "VigilContract"),
        // Rule language: read YAML -> collect -> check against the contract -> compile. Pure.
        .target(name: "VigilRules", dependencies: [
            "VigilContract",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // A cache prefetch hint (`__builtin_prefetch`), which Swift has no spelling for.
        .target(name: "CPrefetch"),
        // Runtime: per-child state, windows, deadlines, evaluation, alerts. Pure of Kafka and files.
        .target(name: "VigilEngine", dependencies: [
            "VigilContract", "VigilRules", "CPrefetch",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // librdkafka from Debian (pkg-config rdkafka), with a shim for its variadic calls.
        .systemLibrary(name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        // The only module that imports CRdKafka: consumer, producer, embedded broker.
        .target(name: "VigilKafka", dependencies: [
            "CRdKafka",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The pipeline and everything with files, processes and threads: replay, audit log, `vigil run`.
        .target(name: "VigilService", dependencies: [
            "VigilContract", "VigilRules", "VigilEngine", "VigilKafka",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        // What an operator reaches over HTTP: /metrics (Prometheus), /healthz, /readyz. SwiftNIO's HTTP/1.
        .target(name: "VigilOperations", dependencies: [
            "VigilService",
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // What tests and tools need beside the service: the stream generator, and in-memory I/O for pipelines
        // (a source, topics, a changelog store, a manual clock), as NIOEmbedded is for NIO.
        .target(name: "VigilTesting", dependencies: [
            "VigilContract", "VigilRules", "VigilEngine", "VigilService",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "vigil", dependencies: [
            "VigilContract", "VigilRules", "VigilEngine", "VigilService", "VigilKafka", "VigilTesting", "VigilOperations",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The benchmark harness (scripts/bench): engine only, end to end against the transport limit, latency.
        .executableTarget(name: "vigil-bench", dependencies: [
            "VigilContract", "VigilRules", "VigilEngine", "VigilKafka", "VigilService", "VigilChaos", "VigilTesting",
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Benchmarks/VigilBench"),
        // The chaos harness: a broker, several `vigil run` processes, SIGKILLs and faults, and the end check.
        .target(name: "VigilChaos", dependencies: [
            "VigilContract", "VigilEngine", "VigilKafka", "VigilService", "VigilTesting",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "vigil-chaos", dependencies: [
            "VigilChaos", "VigilKafka",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "VigilContractTests", dependencies: ["VigilContract"]),
        .testTarget(name: "VigilRulesTests", dependencies: ["VigilRules", "VigilContract"]),
        .testTarget(name: "VigilEngineTests", dependencies: ["VigilEngine", "VigilRules", "VigilContract", "VigilService", "VigilTesting"]),
        // Integration tests: a real broker protocol over TCP (the embedded broker), the `vigil` binary, kcat.
        .testTarget(name: "VigilServiceTests", dependencies: ["VigilService", "VigilTesting", "VigilChaos", "VigilKafka", "VigilEngine", "VigilRules", "VigilContract", "VigilOperations"]),
    ]
)
