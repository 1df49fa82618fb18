/*
 * fuzz/der_to_pem.c - libFuzzer target for ota_pem_length and ota_der_to_pem, the PEM form
 * in which a device's certificate goes to Dice-Auth.
 *
 * The buffer is sized by ota_pem_length, so the two functions must agree exactly: the target
 * gives ota_der_to_pem a heap buffer of precisely that size (ASan catches a byte too many),
 * checks the layout a PEM reader expects, decodes the base64 back with a decoder of its own
 * and compares it with the input, and checks that a buffer one byte short is refused untouched.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota_core.h"

#define FUZZ_CHECK(condition)                                                                   \
    do {                                                                                        \
        if (!(condition)) {                                                                     \
            fprintf(stderr, "der_to_pem: invariant failed at line %d: %s\n", __LINE__,          \
                    #condition);                                                                \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

static const char pem_begin[] = "-----BEGIN CERTIFICATE-----\n";
static const char pem_end[] = "-----END CERTIFICATE-----\n";

#define PEM_LINE 64
#define SENTINEL 0x5a

/* One base64 character's six bits, or -1 for anything outside the standard alphabet. */
static int
base64_value(char character)
{
    if (character >= 'A' && character <= 'Z') {
        return character - 'A';
    }
    if (character >= 'a' && character <= 'z') {
        return character - 'a' + 26;
    }
    if (character >= '0' && character <= '9') {
        return character - '0' + 52;
    }
    if (character == '+') {
        return 62;
    }
    if (character == '/') {
        return 63;
    }
    return -1;
}

/*
 * Decodes the PEM body (lines of base64, each ending in LF) into `out`, checking the line
 * layout on the way: every line but the last exactly 64 characters, the last 1 to 64, padding
 * only in the last quantum. Returns the decoded length.
 */
static size_t
decode_body(const char *body, size_t body_length, uint8_t *out)
{
    size_t decoded = 0;
    size_t line_start = 0;
    size_t characters = 0;
    int padded = 0;

    for (size_t index = 0; index < body_length; index++) {
        if (body[index] == '\n') {
            size_t line_length = index - line_start;
            FUZZ_CHECK(line_length > 0 && line_length <= PEM_LINE && line_length % 4 == 0);
            /* Only the last line may be short. */
            FUZZ_CHECK(line_length == PEM_LINE || index + 1 == body_length);
            line_start = index + 1;
            continue;
        }
        FUZZ_CHECK(!padded || body[index] == '=');
        characters++;
        if (body[index] == '=') {
            padded++;
            continue;
        }
        FUZZ_CHECK(base64_value(body[index]) >= 0);
    }
    FUZZ_CHECK(body_length == 0 || body[body_length - 1] == '\n');
    FUZZ_CHECK(characters % 4 == 0 && padded <= 2);

    /* Layout checked; now the bits, skipping the line ends. */
    uint32_t group = 0;
    int bits = 0;
    for (size_t index = 0; index < body_length; index++) {
        int value = base64_value(body[index]);
        if (value < 0) {
            continue;
        }
        group = (group << 6) | (uint32_t)value;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[decoded++] = (uint8_t)(group >> bits);
            group &= (1u << bits) - 1;
        }
    }
    /* The bits left over by padding must be zero in a canonical encoding. */
    FUZZ_CHECK(group == 0);
    return decoded;
}

static void
check_pem(const uint8_t *der, size_t size, const char *pem, size_t pem_length)
{
    size_t begin_length = sizeof(pem_begin) - 1;
    size_t end_length = sizeof(pem_end) - 1;
    FUZZ_CHECK(pem_length >= begin_length + end_length);
    FUZZ_CHECK(memcmp(pem, pem_begin, begin_length) == 0);
    FUZZ_CHECK(memcmp(pem + pem_length - end_length, pem_end, end_length) == 0);
    FUZZ_CHECK(strlen(pem) == pem_length);

    size_t body_length = pem_length - begin_length - end_length;
    FUZZ_CHECK((size == 0) == (body_length == 0));
    uint8_t *decoded = malloc(body_length / 4 * 3 + 1);
    FUZZ_CHECK(decoded != NULL);
    size_t decoded_length = decode_body(pem + begin_length, body_length, decoded);
    FUZZ_CHECK(decoded_length == size);
    FUZZ_CHECK(size == 0 || memcmp(decoded, der, size) == 0);
    free(decoded);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t needed = ota_pem_length(size);
    FUZZ_CHECK(needed > 0);
    /* The PEM form grows by 4/3 plus line ends and armour: bounded, so a caller's buffer
     * can be sized from the certificate limit. */
    FUZZ_CHECK(needed <= size / 3 * 4 + 4 + (size / 48 + 1) + 60);

    /* Exactly the promised size on the heap: one byte written too many is an ASan report. */
    char *pem = malloc(needed);
    FUZZ_CHECK(pem != NULL);
    memset(pem, SENTINEL, needed);
    size_t pem_length = 0;
    FUZZ_CHECK(ota_der_to_pem(data, size, pem, needed, &pem_length) == OTA_OK);
    FUZZ_CHECK(pem_length == needed - 1);
    FUZZ_CHECK(pem[needed - 1] == '\0');
    check_pem(data, size, pem, pem_length);

    /* The same call without asking for the length writes the same text. */
    char *again = malloc(needed);
    FUZZ_CHECK(again != NULL);
    FUZZ_CHECK(ota_der_to_pem(data, size, again, needed, NULL) == OTA_OK);
    FUZZ_CHECK(memcmp(pem, again, needed) == 0);
    free(again);

    /* One byte short (no room for the NUL) is refused, and refusing writes nothing. */
    char *short_buffer = malloc(needed - 1);
    FUZZ_CHECK(short_buffer != NULL);
    memset(short_buffer, SENTINEL, needed - 1);
    size_t untouched = 12345;
    FUZZ_CHECK(ota_der_to_pem(data, size, short_buffer, needed - 1, &untouched) ==
               OTA_ERR_USAGE);
    FUZZ_CHECK(untouched == 12345);
    for (size_t index = 0; index < needed - 1; index++) {
        FUZZ_CHECK((unsigned char)short_buffer[index] == SENTINEL);
    }
    free(short_buffer);

    free(pem);
    return 0;
}
