/*
 * record_seal.h - TLS 1.2 AES-GCM records sealed in user space with AES-NI and PCLMULQDQ.
 * Not public. The mbedTLS backend seals its outgoing application data with it on the pread
 * path (tls_mbedtls_seal.c); the tests reach it through ota_core_testing.h.
 */

#ifndef OTA_RECORD_SEAL_H
#define OTA_RECORD_SEAL_H

#include <stddef.h>
#include <stdint.h>

/* Record header (5), explicit nonce (8) and tag (16) around the ciphertext. */
#define OTA_RECORD_SEAL_OVERHEAD (5 + 8 + 16)

/* The largest plaintext one TLS record may carry (RFC 5246 6.2.1). */
#define OTA_RECORD_SEAL_MAX_PLAINTEXT 16384

/* The GHASH key powers kept: as many blocks as one reduction folds. */
#define OTA_RECORD_SEAL_POWERS 8

/*
 * One direction of one TLS 1.2 AES-GCM session. Holds key material: callers wipe it with
 * ota_record_sealer_wipe when done. Plain bytes, so it needs no particular alignment.
 */
struct ota_record_sealer {
    unsigned char round_keys[15][16];                    /* AES-128 uses 11, AES-256 15 */
    unsigned char hash_powers[OTA_RECORD_SEAL_POWERS][16]; /* H^1..H^8, bytes reversed */
    unsigned char salt[4];                               /* the implicit part of the nonce */
    int rounds;                                          /* 10 or 14 */
    uint64_t sequence;                                   /* the next record's number */
    int exhausted;                                       /* 2^64-1 was used: no nonce left */
};

/* NULL when this machine can seal; otherwise why not (a fixed string). Any thread. */
const char *ota_record_seal_unavailable(void);

/*
 * Prepares `sealer` for a 16- or 32-byte key, the 4-byte salt from the key block and the next
 * record's sequence number (big-endian, as mbedTLS keeps it). OTA_ERR_USAGE for another key
 * length or when ota_record_seal_unavailable says no.
 */
int ota_record_sealer_init(struct ota_record_sealer *sealer, const unsigned char *key,
                           size_t key_length, const unsigned char salt[4],
                           const unsigned char sequence[8]);

/*
 * Seals `length` (at most OTA_RECORD_SEAL_MAX_PLAINTEXT) bytes as one record of `type` into
 * `record`, which must not overlap `plaintext` and has room for `length` +
 * OTA_RECORD_SEAL_OVERHEAD. Uses and advances the sequence number. OTA_OK, OTA_ERR_USAGE for
 * sizes, OTA_ERR_INTERNAL once the sequence numbers are used up.
 */
int ota_record_seal(struct ota_record_sealer *sealer, unsigned char type,
                    const unsigned char *plaintext, size_t length, unsigned char *record,
                    size_t capacity, size_t *record_length);

/* Wipes the keys; the sealer is unusable until initialised again. */
void ota_record_sealer_wipe(struct ota_record_sealer *sealer);

/*
 * Plain AES-GCM encryption with a 12-byte IV (NIST SP 800-38D), for the known-answer tests:
 * `output` gets `length` bytes, `tag` 16. OTA_OK or OTA_ERR_USAGE.
 */
int ota_record_seal_gcm(const unsigned char *key, size_t key_length, const unsigned char iv[12],
                        const unsigned char *aad, size_t aad_length, const unsigned char *input,
                        size_t length, unsigned char *output, unsigned char tag[16]);

#endif /* OTA_RECORD_SEAL_H */
