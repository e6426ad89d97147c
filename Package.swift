// swift-tools-version:6.2
import PackageDescription

// Targets in the order of docs/architecture.md's module table: each depends only on targets above it.
// scripts/check.sh checks the imports of every target against this table.
let package = Package(
    name: "sigil",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sigil", targets: ["sigil"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "SigilCrypto",
            dependencies: ["COpenSSL"]
        ),
        .target(
            name: "SigilCore",
            dependencies: [
                "SigilCrypto",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "SigilFiles"),
        .target(
            name: "SigilTokens",
            dependencies: [
                "SigilCore", "SigilCrypto", "SigilFiles",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ]
        ),
        .target(name: "SigilAPIModels"),
        .target(
            name: "SigilStore",
            dependencies: [
                "SigilCore",
                "SigilCrypto",
                "SigilFiles",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // protoc output for Istio's CA API (scripts/gen-protos), from the .proto file in its proto/.
        .target(
            name: "SigilIstioGRPC",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["proto"]
        ),
        .target(
            name: "SigilServer",
            dependencies: [
                "SigilCore",
                "SigilCrypto",
                "SigilFiles",
                "SigilTokens",
                "SigilAPIModels",
                "SigilStore",
                "SigilIstioGRPC",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        // protoc output for the agent's socket (scripts/gen-protos), from the .proto files in its proto/.
        .target(
            name: "SigilAgentGRPC",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["proto"]
        ),
        .target(
            name: "SigilAgent",
            dependencies: [
                "SigilCore",
                "SigilCrypto",
                "SigilFiles",
                "SigilAPIModels",
                "SigilAgentGRPC",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "SigilTestSupport",
            dependencies: ["SigilCore", "SigilCrypto", "SigilStore"]
        ),
        .executableTarget(
            name: "sigil",
            dependencies: [
                "SigilCore",
                "SigilCrypto",
                "SigilFiles",
                "SigilTokens",
                "SigilAPIModels",
                "SigilStore",
                "SigilServer",
                "SigilAgent",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "sigil-leakcheck",
            dependencies: ["SigilCore", "SigilCrypto"]
        ),
        // Fuzz harness (scripts/fuzz): libFuzzer in a -sanitize=fuzzer build, a corpus replayer otherwise.
        .target(name: "CLibFuzzer"),
        .executableTarget(
            name: "sigil-fuzz",
            dependencies: ["CLibFuzzer", "SigilCore", "SigilCrypto", "SigilIstioGRPC", "SigilTokens"]
        ),
        // The load generator of scripts/bench, kept apart from the product (Benchmarks/README.md).
        .executableTarget(
            name: "sigil-load",
            dependencies: [
                "SigilCore",
                "SigilCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            path: "Benchmarks/sigil-load"
        ),
        .testTarget(name: "SigilCryptoTests", dependencies: ["SigilCrypto", "SigilTestSupport"]),
        .testTarget(
            name: "SigilCoreTests",
            dependencies: [
                "SigilCore", "SigilCrypto", "SigilTestSupport", .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["Fixtures/README.md"]
        ),
        .testTarget(name: "SigilFilesTests", dependencies: ["SigilFiles", "SigilTestSupport"]),
        .testTarget(
            name: "SigilTokensTests",
            dependencies: [
                "SigilTokens", "SigilCore", "SigilCrypto", "SigilTestSupport",
                .product(name: "JWTKit", package: "jwt-kit"),
            ]
        ),
        .testTarget(
            name: "SigilStoreTests",
            dependencies: [
                "SigilStore", "SigilCore", "SigilFiles", "SigilTestSupport",
                .product(name: "GRDB", package: "GRDB.swift"), .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "SigilServerTests",
            dependencies: [
                "SigilServer", "SigilAPIModels", "SigilCore", "SigilCrypto", "SigilTokens", "SigilStore",
                "SigilTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "SigilAgentTests",
            dependencies: [
                "SigilAgent", "SigilAgentGRPC", "SigilAPIModels", "SigilCore", "SigilCrypto", "SigilFiles",
                "SigilServer",
                "SigilStore", "SigilTokens", "SigilTestSupport",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
