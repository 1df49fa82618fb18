/*
 * ota_core_testing.h - entry points for the core's own tests (Tests/OTACoreTests) into parts
 * that have no public API. Not part of the API: scripts/install does not install this header,
 * and these functions may change with any commit.
 */

#ifndef OTA_CORE_TESTING_H
#define OTA_CORE_TESTING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* NULL when the user-space AES-GCM record sealer runs on this machine, else why not. */
const char *ota_testing_seal_unavailable(void);

/* Who computes ota_testing_aes_gcm. */
enum {
    OTA_TESTING_GCM_SEALER = 0,  /* record_seal.c */
    OTA_TESTING_GCM_LIBRARY = 1, /* the backend's TLS library */
};

/*
 * AES-GCM encryption with a 16- or 32-byte key and a 12-byte IV: `output` gets `length` bytes,
 * `tag` 16. Pointers may be NULL where their length is 0. OTA_OK or a negative ota_status.
 */
int ota_testing_aes_gcm(int engine, const uint8_t *key, size_t key_length, const uint8_t iv[12],
                        const uint8_t *aad, size_t aad_length, const uint8_t *input,
                        size_t length, uint8_t *output, uint8_t tag[16]);

/*
 * Seals `count` TLS 1.2 records of `type`, each carrying `plaintext`, one after another into
 * `records`, numbered from `sequence`, as the mbedTLS backend's pread path does. `*used` gets
 * the bytes written. OTA_OK, or the status of the first record that could not be sealed.
 */
int ota_testing_seal_records(const uint8_t *key, size_t key_length, const uint8_t salt[4],
                             uint64_t sequence, uint8_t type, const uint8_t *plaintext,
                             size_t length, unsigned count, uint8_t *records, size_t capacity,
                             size_t *used);

#ifdef __cplusplus
}
#endif

#endif /* OTA_CORE_TESTING_H */
