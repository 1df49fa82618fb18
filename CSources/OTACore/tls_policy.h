/*
 * tls_policy.h - the agent's TLS policy as data: the cipher suites and key exchange groups a
 * server may offer, in preference order. Not public. Both backends build their lists from
 * these tables so that they cannot drift apart, and bench/handshake.c includes this header
 * so that the benchmark measures the handshakes the agent really does.
 *
 * The policy: TLS 1.2 and 1.3 only; ECDHE key exchange (TLS 1.3 has no other) with an AEAD
 * cipher, AES-GCM or ChaCha20-Poly1305; AES-GCM first. ESP-IDF's default mbedTLS build offers
 * ECDHE-RSA-AES128-GCM-SHA256 and ECDHE-ECDSA-AES128-GCM-SHA256 and its AES hardware makes
 * them the cheapest, hence their place at the top. Groups: X25519, then P-256 (what ESP-IDF
 * offers), then P-384 for clients that insist on it.
 *
 * Header only (static tables) so that a standalone program can include it by path.
 */

#ifndef OTA_TLS_POLICY_H
#define OTA_TLS_POLICY_H

#include <stddef.h>
#include <stdint.h>

/* Protocol versions as on the wire; the same numbers as OTA_TLS_1_2 / OTA_TLS_1_3. */
#define OTA_TLS_POLICY_VERSION_1_2 0x0303
#define OTA_TLS_POLICY_VERSION_1_3 0x0304

struct ota_tls_suite {
    uint16_t id;             /* IANA code point; mbedTLS uses these numbers as its own ids */
    uint16_t version;        /* TLS 1.2 suites serve 1.2 only, TLS 1.3 suites 1.3 only */
    const char *openssl_name;
    const char *iana_name;
};

static const struct ota_tls_suite ota_tls_policy_suites[] = {
    {0xC02B, OTA_TLS_POLICY_VERSION_1_2, "ECDHE-ECDSA-AES128-GCM-SHA256",
     "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
    {0xC02F, OTA_TLS_POLICY_VERSION_1_2, "ECDHE-RSA-AES128-GCM-SHA256",
     "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
    {0xC02C, OTA_TLS_POLICY_VERSION_1_2, "ECDHE-ECDSA-AES256-GCM-SHA384",
     "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
    {0xC030, OTA_TLS_POLICY_VERSION_1_2, "ECDHE-RSA-AES256-GCM-SHA384",
     "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"},
    {0xCCA9, OTA_TLS_POLICY_VERSION_1_2, "ECDHE-ECDSA-CHACHA20-POLY1305",
     "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
    {0xCCA8, OTA_TLS_POLICY_VERSION_1_2, "ECDHE-RSA-CHACHA20-POLY1305",
     "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"},
    {0x1301, OTA_TLS_POLICY_VERSION_1_3, "TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"},
    {0x1302, OTA_TLS_POLICY_VERSION_1_3, "TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"},
    {0x1303, OTA_TLS_POLICY_VERSION_1_3, "TLS_CHACHA20_POLY1305_SHA256",
     "TLS_CHACHA20_POLY1305_SHA256"},
};

#define OTA_TLS_POLICY_SUITE_COUNT \
    (sizeof(ota_tls_policy_suites) / sizeof(ota_tls_policy_suites[0]))

struct ota_tls_group {
    uint16_t id; /* IANA NamedGroup; mbedtls_ecp_curve_info_from_tls_id maps it */
    const char *openssl_name;
};

static const struct ota_tls_group ota_tls_policy_groups[] = {
    {29, "X25519"},
    {23, "P-256"},
    {24, "P-384"},
};

#define OTA_TLS_POLICY_GROUP_COUNT \
    (sizeof(ota_tls_policy_groups) / sizeof(ota_tls_policy_groups[0]))

/* What one server configuration offers: a subset of the table above, in preference order. */
struct ota_tls_policy {
    uint16_t min_version;
    size_t count;
    const struct ota_tls_suite *suites[OTA_TLS_POLICY_SUITE_COUNT];
};

#endif /* OTA_TLS_POLICY_H */
