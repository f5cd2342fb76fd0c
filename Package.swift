// swift-tools-version:6.0
import PackageDescription

/// Hot paths cross module boundaries (the wheel reads the store's bytes): let the optimizer
/// specialise generics across them.
/// Release builds also leave out the run-time exclusivity checks (`-enforce-exclusivity=
/// unchecked`): each access to a class's stored property or to a ByteBuffer's storage paid
/// for a lookup in a thread-local access set (see docs/architecture.md, "Release builds").
/// Debug builds, which every test runs, keep them.
let releaseSettings: [SwiftSetting] = [
    .unsafeFlags(["-cross-module-optimization", "-enforce-exclusivity=unchecked"], .when(configuration: .release))
]

let package = Package(
    name: "Chime",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "chime", targets: ["chime"]),
        .library(name: "ChimeStore", targets: ["ChimeStore"]),
        .library(name: "ChimeBroker", targets: ["ChimeBroker"]),
        .library(name: "ChimeClient", targets: ["ChimeClient"]),
        .library(name: "ChimeWorker", targets: ["ChimeWorker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.30.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.10.0"),
        // Hummingbird's own dependency, named for the HTTP parts the admin port's limits see.
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // liblz4 from the system (Debian: liblz4-dev).
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"]), .brew(["lz4"])]
        ),
        // CRC-32C: SSE4.2 instruction when the CPU has it, a table otherwise.
        .target(
            name: "CCRC32C",
            cSettings: [.unsafeFlags(["-O3"])]
        ),
        .target(
            name: "ChimeStore",
            dependencies: [
                "CLZ4",
                "CCRC32C",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
            ],
            swiftSettings: releaseSettings
        ),
        // Timer log and the hierarchical timing wheel of list heads (docs/architecture.md, ChimeWheel).
        .target(
            name: "ChimeWheel",
            dependencies: [
                "ChimeStore", .product(name: "Logging", package: "swift-log"),
                // NIOPosix for relative timers (SystemWheelClock.sleep).
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: releaseSettings
        ),
        // Schedules as pure functions (design.md §9): cron parsing, next occurrences through DST,
        // intervals, jitter. Foundation only, for the time zone database.
        .target(
            name: "ChimeSchedule",
            swiftSettings: releaseSettings
        ),
        // The engine without sockets: topics, partitions, groups, leases, retries (docs/architecture.md, ChimeBroker).
        .target(
            name: "ChimeBroker",
            dependencies: [
                "ChimeStore", "ChimeWheel", "ChimeSchedule",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: releaseSettings
        ),
        // Frames and codecs shared by server and client (docs/formats.md); no engine inside.
        .target(
            name: "ChimeProtocol",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: releaseSettings
        ),
        // The TCP server over the engine (SwiftNIO): handshake, auth, limits, dispatch; the
        // admin HTTP port (Hummingbird) with Prometheus metrics; configuration; lifecycle.
        .target(
            name: "ChimeServer",
            dependencies: [
                "ChimeBroker", "ChimeProtocol", "ChimeSchedule", "ChimeStore", "ChimeWheel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: releaseSettings
        ),
        // The Swift client: requests pipelined on one connection, reconnecting; a consumer
        // as an AsyncSequence.
        .target(
            name: "ChimeClient",
            dependencies: [
                // The record batch codec: immediate publishes go in the store's format.
                "ChimeProtocol", "ChimeSchedule", "ChimeStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: releaseSettings
        ),
        // Workers on the client: typed jobs, pools, retries, leases kept while a job runs,
        // graceful shutdown (README "Workers", docs/architecture.md).
        .target(
            name: "ChimeWorker",
            dependencies: [
                "ChimeClient", "ChimeProtocol", "ChimeSchedule",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: releaseSettings
        ),
        .executableTarget(
            name: "chime",
            dependencies: [
                "ChimeStore",
                "ChimeWheel",
                "ChimeBroker",
                "ChimeServer",
                "ChimeClient",
                "ChimeProtocol",
                "ChimeWorker",
                "ChimeSchedule",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // Benchmarks: not tests, never timed assertions. See bench/README.md.
        .executableTarget(
            name: "StoreBench",
            dependencies: ["ChimeStore", .product(name: "Logging", package: "swift-log")],
            path: "bench/StoreBench"
        ),
        .executableTarget(
            name: "BrokerBench",
            dependencies: ["ChimeBroker", "ChimeWheel", "ChimeStore", .product(name: "Logging", package: "swift-log")],
            path: "bench/BrokerBench"
        ),
        .executableTarget(
            name: "WheelBench",
            dependencies: ["ChimeWheel", "ChimeStore", .product(name: "Logging", package: "swift-log")],
            path: "bench/WheelBench"
        ),
        // Chime beside beanstalkd and Redis (bench/suite.sh). The peers' protocol clients
        // live here, not in the product.
        .executableTarget(
            name: "PeerBench",
            dependencies: [
                "ChimeClient", "ChimeProtocol", "ChimeSchedule", "ChimeWorker",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "bench/PeerBench"
        ),
        // The sharded report of README's "Flows": a schedule, a splitter, shards, a reducer.
        .executableTarget(
            name: "ShardedReport",
            dependencies: [
                "ChimeClient", "ChimeProtocol", "ChimeWorker",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Examples/ShardedReport"
        ),
        // Locks, callbacks and aborts against a real server (bench/coordination.sh, issue 18).
        .executableTarget(
            name: "CoordinationBench",
            dependencies: [
                "ChimeClient", "ChimeProtocol", "ChimeWorker",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "bench/CoordinationBench"
        ),
        // Many partitions on one broker (bench/partitions.sh): creates the topics and runs the
        // trickle through the client; the script starts and samples the server.
        .executableTarget(
            name: "PartitionBench",
            dependencies: [
                "ChimeClient", "ChimeProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "bench/PartitionBench"
        ),
        // libFuzzer target for the frame decoder and payload codecs. Fuzz/build.sh builds it
        // with -sanitize=fuzzer,address and -DCHIME_FUZZ in its own scratch directory; a
        // normal build compiles only a stub main (see Fuzz/FrameFuzz/FrameFuzz.swift).
        .executableTarget(
            name: "FrameFuzz",
            dependencies: ["ChimeProtocol", "ChimeStore", .product(name: "NIOCore", package: "swift-nio")],
            path: "Fuzz/FrameFuzz"
        ),
        // A child process the crash tests start and kill with SIGKILL.
        .executableTarget(
            name: "CrashAgent",
            dependencies: ["ChimeStore", "ChimeWheel", "ChimeBroker", .product(name: "Logging", package: "swift-log")],
            path: "Tests/CrashAgent"
        ),
        // Helpers shared by the test targets (temporary directories, processes, file surgery,
        // a clock moved by hand).
        .target(
            name: "ChimeTestSupport",
            dependencies: ["ChimeStore", "ChimeWheel", .product(name: "Logging", package: "swift-log")],
            path: "Tests/ChimeTestSupport"
        ),
        .testTarget(
            name: "ChimeStoreTests",
            dependencies: [
                "ChimeStore", "CrashAgent", "CCRC32C", "chime", "ChimeTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "ChimeWheelTests",
            dependencies: ["ChimeWheel", "ChimeStore", "ChimeTestSupport", "CrashAgent"]
        ),
        .testTarget(
            name: "ChimeProtocolTests",
            dependencies: [
                "ChimeProtocol", "ChimeStore", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "ChimeServerTests",
            dependencies: [
                "ChimeServer", "ChimeProtocol", "ChimeBroker", "ChimeSchedule", "ChimeWheel", "ChimeStore", "ChimeTestSupport", "ChimeClient", "chime",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            // TLS certificates for TLSTests (how they were made: Fixtures/README.md).
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "ChimeWorkerTests",
            dependencies: [
                "ChimeWorker", "ChimeClient", "ChimeProtocol", "ChimeSchedule", "ChimeTestSupport", "chime", "ShardedReport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "ChimeScheduleTests",
            dependencies: ["ChimeSchedule"]
        ),
        .testTarget(
            name: "ChimeBrokerTests",
            dependencies: ["ChimeBroker", "ChimeWheel", "ChimeStore", "ChimeSchedule", "ChimeTestSupport", "CrashAgent", "chime"]
        ),
    ]
)
