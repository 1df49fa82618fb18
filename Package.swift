// swift-tools-version: 6.1
//
// ota-agent: the gateway side of secure over-the-air updates for ESP32 devices.
//
// The TLS backend of the C core is a package trait: OpenSSL by default, mbedTLS with
// `--traits MbedTLS`. Enabling both is refused by the C core at compile time.

import PackageDescription

let openSSL: Set<String> = ["OpenSSL"]
let mbedTLS: Set<String> = ["MbedTLS"]

let package = Package(
    name: "ota-agent",
    products: [
        .executable(name: "ota-agent", targets: ["ota-agent"]),
        .library(name: "OTAAgent", targets: ["OTAAgent"]),
        .library(name: "OTACore", type: .static, targets: ["OTACore"]),
        .executable(name: "ota-device-sim", targets: ["OTADeviceSim"]),
        .executable(name: "dice-auth-verifier", targets: ["DiceAuthVerifier"]),
    ],
    traits: [
        .default(enabledTraits: ["OpenSSL"]),
        .trait(name: "OpenSSL", description: "Build the C core on OpenSSL 3 (libssl, libcrypto)."),
        .trait(name: "MbedTLS", description: "Build the C core on mbedTLS 2.28, the devices' own stack."),
    ],
    targets: [
        // The C core: TLS server, certificate framing and inspection, image streaming.
        .target(
            name: "OTACore",
            path: "CSources/OTACore",
            cSettings: [
                .define("OTA_BACKEND_OPENSSL", .when(traits: openSSL)),
                .define("OTA_BACKEND_MBEDTLS", .when(traits: mbedTLS)),
                .define("_GNU_SOURCE"),
                .unsafeFlags(["-Wall", "-Wextra", "-Wno-unused-parameter"]),
            ],
            linkerSettings: [
                .linkedLibrary("ssl", .when(traits: openSSL)),
                .linkedLibrary("crypto", .when(traits: openSSL)),
                .linkedLibrary("mbedtls", .when(traits: mbedTLS)),
                .linkedLibrary("mbedx509", .when(traits: mbedTLS)),
                .linkedLibrary("mbedcrypto", .when(traits: mbedTLS)),
            ]
        ),

        // libcurl as the system provides it, and the few variadic calls Swift cannot make.
        .systemLibrary(
            name: "CLibcurl",
            path: "CSources/CLibcurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .target(name: "CCurlShim", dependencies: ["CLibcurl"], path: "CSources/CCurlShim"),

        // The agent's logic as a Swift library, and the thin command-line tool over it.
        .target(name: "OTAAgent", dependencies: ["OTACore", "CCurlShim"], path: "Sources/OTAAgent"),
        .executableTarget(name: "ota-agent", dependencies: ["OTAAgent"], path: "Sources/ota-agent"),
        // A Swift program embedding the library through its async API (see README, "Embedding").
        .executableTarget(name: "OTAAgentEmbeddingExample", dependencies: ["OTAAgent"],
                          path: "Examples/SwiftEmbedding"),

        // Test peers: a field device on mbedTLS and a Dice-Auth compatible verifier.
        // Neither links the agent's core.
        .executableTarget(
            name: "OTADeviceSim",
            path: "CSources/OTADeviceSim",
            cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [
                .linkedLibrary("mbedtls"),
                .linkedLibrary("mbedx509"),
                .linkedLibrary("mbedcrypto"),
                .linkedLibrary("pthread"),
            ]
        ),
        .executableTarget(
            name: "DiceAuthVerifier",
            path: "CSources/DiceAuthVerifier",
            cSettings: [.define("_GNU_SOURCE")],
            // libssl for serving https (and asking for client certificates) in tests.
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]
        ),

        .testTarget(name: "OTACoreTests", dependencies: ["OTACore"]),
        .testTarget(name: "OTAAgentTests", dependencies: ["OTAAgent"]),
        .testTarget(name: "EndToEndTests", dependencies: ["OTAAgent"]),
    ]
)
