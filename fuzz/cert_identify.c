/*
 * fuzz/cert_identify.c - libFuzzer target for ota_cert_identify, the walk of a device
 * certificate's DER to its subject and validity.
 *
 * The walk reads bytes the device chose before Dice-Auth has judged them, and its text goes
 * into every log line, so the target checks what the header promises: the subject is always
 * NUL-terminated inside its array, a refusal leaves every field but the fingerprint empty,
 * the fingerprint is the SHA-256 of the bytes whatever happens, and "one whole certificate"
 * means that neither a byte less nor a byte more is accepted.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota_core.h"
#include "ota_internal.h"

#define FUZZ_CHECK(condition)                                                                   \
    do {                                                                                        \
        if (!(condition)) {                                                                     \
            fprintf(stderr, "cert_identify: invariant failed at line %d: %s\n", __LINE__,       \
                    #condition);                                                                \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

/* Epoch seconds of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the span four year digits
 * can name. */
#define EARLIEST_TIME (-62167219200LL)
#define LATEST_TIME 253402300799LL

static int
identify(const uint8_t *bytes, size_t length, ota_cert_identity *identity)
{
    /* Garbage first, so a field the function forgets to set shows. */
    memset(identity, 0xa5, sizeof(*identity));
    return ota_cert_identify(bytes, length, identity);
}

static void
check_identity(int status, const uint8_t *bytes, size_t length, const ota_cert_identity *identity)
{
    FUZZ_CHECK(status == OTA_OK || status == OTA_ERR_PROTOCOL);

    uint8_t digest[32];
    FUZZ_CHECK(ota_sha256(bytes, length, digest) == OTA_OK);
    FUZZ_CHECK(memcmp(digest, identity->sha256, sizeof(digest)) == 0);

    const char *end = memchr(identity->subject, '\0', sizeof(identity->subject));
    FUZZ_CHECK(end != NULL);

    if (status != OTA_OK) {
        static const char zeros[sizeof(identity->subject)];
        FUZZ_CHECK(memcmp(identity->subject, zeros, sizeof(zeros)) == 0);
        FUZZ_CHECK(identity->not_before == 0 && identity->not_after == 0);
        return;
    }
    FUZZ_CHECK(length >= 2 && bytes[0] == 0x30);
    FUZZ_CHECK(identity->not_before >= EARLIEST_TIME && identity->not_before <= LATEST_TIME);
    FUZZ_CHECK(identity->not_after >= EARLIEST_TIME && identity->not_after <= LATEST_TIME);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Copied with one spare byte, so the "one more byte" case below needs no second copy while
     * ASan still sees an overread past `size` in the calls that are given `size`. */
    uint8_t *bytes = malloc(size + 1);
    FUZZ_CHECK(bytes != NULL);
    if (size > 0) {
        memcpy(bytes, data, size);
    }

    ota_cert_identity identity;
    int status = identify(bytes, size, &identity);
    check_identity(status, bytes, size, &identity);

    /* The same bytes give the same answer, byte for byte. */
    ota_cert_identity again;
    FUZZ_CHECK(identify(bytes, size, &again) == status);
    FUZZ_CHECK(memcmp(&identity, &again, sizeof(identity)) == 0);

    if (status == OTA_OK) {
        /* A whole certificate: cut short or followed by anything, it is no longer one. */
        ota_cert_identity other;
        int shorter = identify(bytes, size - 1, &other);
        check_identity(shorter, bytes, size - 1, &other);
        FUZZ_CHECK(shorter == OTA_ERR_PROTOCOL);

        bytes[size] = 0x00;
        int longer = identify(bytes, size + 1, &other);
        check_identity(longer, bytes, size + 1, &other);
        FUZZ_CHECK(longer == OTA_ERR_PROTOCOL);
    }

    FUZZ_CHECK(ota_cert_identify(bytes, size, NULL) == OTA_ERR_USAGE);

    /* The key kind walks the same structure a little further: any answer, no overread. */
    int kind = ota_cert_key_kind(bytes, size);
    FUZZ_CHECK(kind == OTA_KEY_OTHER || kind == OTA_KEY_RSA || kind == OTA_KEY_EC);
    free(bytes);
    return 0;
}
