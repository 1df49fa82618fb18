/*
 * fuzz/der_frame.c - libFuzzer target for ota_der_frame, the framing of the device's
 * attestation certificate.
 *
 * These are the first bytes a device controls, read before anything is verified, so the
 * target checks the contract rather than only running the code: what a COMPLETE or NEED_MORE
 * answer promises about `total`, that a decision never changes as more bytes arrive (the
 * session feeds the framer a growing buffer), and that the answer does not depend on whether
 * the caller asked for `total` and `reason`.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota_core.h"

/* Stops the run with a message libFuzzer keeps next to the crashing input. */
#define FUZZ_CHECK(condition)                                                                   \
    do {                                                                                        \
        if (!(condition)) {                                                                     \
            fprintf(stderr, "der_frame: invariant failed at line %d: %s\n", __LINE__,           \
                    #condition);                                                                \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

struct frame_answer {
    ota_der_state state;
    size_t total;
    const char *reason;
};

static struct frame_answer
frame(const uint8_t *bytes, size_t length, size_t max_total)
{
    /* Sentinels, so that an output the framer forgot to write fails the checks. */
    struct frame_answer answer = {OTA_DER_INVALID, (size_t)-1, "unset"};
    answer.state = ota_der_frame(bytes, length, max_total, &answer.total, &answer.reason);
    return answer;
}

/*
 * The framing rule restated independently of der.c, from the header's contract: tag 0x30,
 * definite length, short form below 128, else one or two minimal length bytes, and the whole
 * frame within the limit. Returns the state and, unless INVALID, the frame's total once the
 * header is complete (0 before).
 */
static ota_der_state
expected_state(const uint8_t *bytes, size_t length, size_t limit, size_t *frame_total)
{
    *frame_total = 0;
    if (length >= 1 && bytes[0] != 0x30) {
        return OTA_DER_INVALID;
    }
    if (length < 2) {
        return OTA_DER_NEED_MORE;
    }
    size_t length_bytes = bytes[1] < 0x80 ? 0 : bytes[1] & 0x7f;
    if (bytes[1] == 0x80 || length_bytes > 2) {
        return OTA_DER_INVALID;
    }
    if (length < 2 + length_bytes) {
        return OTA_DER_NEED_MORE;
    }
    size_t content = bytes[1];
    if (length_bytes == 1) {
        content = bytes[2];
        if (content < 128) {
            return OTA_DER_INVALID;
        }
    } else if (length_bytes == 2) {
        content = (size_t)bytes[2] << 8 | bytes[3];
        if (bytes[2] == 0) {
            return OTA_DER_INVALID;
        }
    }
    *frame_total = 2 + length_bytes + content;
    if (*frame_total > limit) {
        return OTA_DER_INVALID;
    }
    return length >= *frame_total ? OTA_DER_COMPLETE : OTA_DER_NEED_MORE;
}

/* What one answer promises on its own, and that it is the rule's answer. */
static void
check_answer(struct frame_answer answer, const uint8_t *bytes, size_t length, size_t max_total)
{
    size_t limit = max_total < OTA_DER_MAX_LENGTH ? max_total : OTA_DER_MAX_LENGTH;

    size_t frame_total;
    FUZZ_CHECK(answer.state == expected_state(bytes, length, limit, &frame_total));
    if (answer.state != OTA_DER_INVALID && frame_total > 0) {
        FUZZ_CHECK(answer.total == frame_total);
    }

    switch (answer.state) {
    case OTA_DER_COMPLETE:
        FUZZ_CHECK(answer.reason == NULL);
        FUZZ_CHECK(answer.total >= 2);
        FUZZ_CHECK(answer.total <= length);
        FUZZ_CHECK(answer.total <= limit);
        FUZZ_CHECK(bytes[0] == 0x30);
        break;
    case OTA_DER_NEED_MORE:
        FUZZ_CHECK(answer.reason == NULL);
        FUZZ_CHECK(answer.total > length);
        /* With the whole length header at hand, asking for more than the limit would make
         * the session wait for bytes it must refuse anyway. */
        if (length >= 4) {
            FUZZ_CHECK(answer.total <= limit);
        }
        FUZZ_CHECK(length == 0 || bytes[0] == 0x30);
        break;
    case OTA_DER_INVALID:
        FUZZ_CHECK(answer.reason != NULL && answer.reason[0] != '\0');
        break;
    default:
        FUZZ_CHECK(!"state outside ota_der_state");
    }
}

/* The same question without the optional outputs must get the same state. */
static void
check_optional_outputs(struct frame_answer answer, const uint8_t *bytes, size_t length,
                       size_t max_total)
{
    FUZZ_CHECK(ota_der_frame(bytes, length, max_total, NULL, NULL) == answer.state);
    size_t total = 0;
    FUZZ_CHECK(ota_der_frame(bytes, length, max_total, &total, NULL) == answer.state);
    if (answer.state != OTA_DER_INVALID) {
        FUZZ_CHECK(total == answer.total);
    }
}

/*
 * Bytes arrive in pieces: every prefix of the input must have been answered consistently with
 * the full input. A refusal is final; a COMPLETE frame is complete on every prefix holding
 * it; a prefix short of the frame asks for more, never for more than the frame.
 */
static void
check_prefix(struct frame_answer whole, const uint8_t *bytes, size_t prefix, size_t max_total)
{
    struct frame_answer part = frame(bytes, prefix, max_total);
    check_answer(part, bytes, prefix, max_total);
    if (part.state == OTA_DER_INVALID) {
        FUZZ_CHECK(whole.state == OTA_DER_INVALID);
        return;
    }
    if (part.state == OTA_DER_COMPLETE) {
        FUZZ_CHECK(whole.state == OTA_DER_COMPLETE && whole.total == part.total);
        return;
    }
    if (whole.state == OTA_DER_COMPLETE) {
        FUZZ_CHECK(part.total <= whole.total);
    }
}

/*
 * The answer depends on the header (at most four bytes) and on whether the frame fits, so the
 * prefixes that matter are the header's and those around the frame's end; every prefix would
 * make long inputs quadratic and the fuzzer slow.
 */
static void
check_prefixes(struct frame_answer whole, const uint8_t *bytes, size_t length, size_t max_total)
{
    for (size_t prefix = 0; prefix < length && prefix <= 6; prefix++) {
        check_prefix(whole, bytes, prefix, max_total);
    }
    if (length > 0) {
        check_prefix(whole, bytes, length - 1, max_total);
    }
    if (whole.state == OTA_DER_COMPLETE) {
        check_prefix(whole, bytes, whole.total - 1, max_total);
        check_prefix(whole, bytes, whole.total, max_total);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Copied so that ASan sees an overread of exactly the input's end. */
    uint8_t *bytes = size > 0 ? malloc(size) : NULL;
    if (size > 0 && bytes == NULL) {
        return 0;
    }
    if (size > 0) {
        memcpy(bytes, data, size);
    }

    /* The session's limit, limits the input can reach or cross, and one above the maximum
     * (which the framer must clamp). */
    const size_t limits[] = {OTA_DER_MAX_LENGTH, OTA_DER_MAX_LENGTH * 2, size, size / 2, 200, 0};
    for (size_t index = 0; index < sizeof(limits) / sizeof(limits[0]); index++) {
        struct frame_answer whole = frame(bytes, size, limits[index]);
        check_answer(whole, bytes, size, limits[index]);
        check_optional_outputs(whole, bytes, size, limits[index]);
        check_prefixes(whole, bytes, size, limits[index]);
    }

    /* A limit above the maximum behaves exactly as the maximum. */
    struct frame_answer clamped = frame(bytes, size, SIZE_MAX);
    struct frame_answer maximum = frame(bytes, size, OTA_DER_MAX_LENGTH);
    FUZZ_CHECK(clamped.state == maximum.state);
    if (clamped.state != OTA_DER_INVALID) {
        FUZZ_CHECK(clamped.total == maximum.total);
    }

    free(bytes);
    return 0;
}
