/*
 * record_seal.c - TLS 1.2 AES-GCM records sealed in user space with AES-NI and PCLMULQDQ.
 *
 * Why: mbedTLS 2.28 (Debian 12) encrypts GCM one 16-byte block per call and multiplies GHASH
 * one block at a time through byte-swapping C loops, which held the mbedTLS build's pread path
 * to a quarter of what one reader takes. Here eight counter blocks go through the AES rounds
 * side by side and eight ciphertext blocks are folded into GHASH with one reduction, using the
 * precomputed powers H^1..H^8. Written from NIST SP 800-38D (GCM), FIPS 197 (the AES key
 * schedule) and RFC 5246 6.2.3.3 with RFC 5288 3 (the record and its nonce).
 *
 * GHASH's field is GF(2^128) modulo x^128 + x^7 + x^2 + x + 1, and the first (most significant)
 * bit of a block is the coefficient of x^0. A block loaded with its bytes reversed holds that
 * coefficient in the register's top bit: the "reflected" form used throughout. The carry-less
 * product of two reflected values is the reflected 255-bit product one bit too low; shifted
 * left by one, its upper 128 bits are the product's terms x^0..x^127 and its lower 128 bits
 * the terms x^128..x^255, which fold back with x^128 = x^7 + x^2 + x + 1 (see
 * ota_seal_reduce). Multiplying by x is a right shift in this form.
 *
 * The intrinsics are compiled for AES-NI, PCLMULQDQ and SSE4.1 per function (target
 * attributes), so the package still builds for baseline x86-64 and the caller asks
 * ota_record_seal_unavailable at run time. Other architectures have no sealer.
 */

#include <string.h>

#include "ota_core.h"
#include "ota_core_testing.h"
#include "record_seal.h"
#include "tls_backend.h"

#if defined(OTA_BACKEND_MBEDTLS)
#include <mbedtls/platform_util.h>
#else
#include <openssl/crypto.h>
#endif

/* Wipes key material so that the compiler cannot drop the stores. */
static void
ota_seal_zeroize(void *bytes, size_t length)
{
#if defined(OTA_BACKEND_MBEDTLS)
    mbedtls_platform_zeroize(bytes, length);
#else
    OPENSSL_cleanse(bytes, length);
#endif
}

void
ota_record_sealer_wipe(struct ota_record_sealer *sealer)
{
    if (sealer != NULL) {
        ota_seal_zeroize(sealer, sizeof(*sealer));
    }
}

/* The big-endian bytes of a 64-bit number and back. */
static void
ota_seal_put64(unsigned char *bytes, uint64_t value)
{
    for (int index = 7; index >= 0; index--) {
        bytes[index] = (unsigned char)value;
        value >>= 8;
    }
}

static uint64_t
ota_seal_get64(const unsigned char *bytes)
{
    uint64_t value = 0;
    for (int index = 0; index < 8; index++) {
        value = value << 8 | bytes[index];
    }
    return value;
}

#if defined(__x86_64__)

#include <immintrin.h>
#include <wmmintrin.h>

#define OTA_SEAL_TARGET __attribute__((target("aes,pclmul,ssse3,sse4.1")))

/* The key schedule and hash key powers, loaded once per call. */
struct ota_seal_keys {
    __m128i round[15];
    __m128i power[OTA_RECORD_SEAL_POWERS]; /* power[i] = H^(i+1), reflected */
    int rounds;
};

/* ---- GF(2^128) ----------------------------------------------------------------------------- */

/* Reverses a block's 16 bytes: between GCM's byte order and the reflected form. */
OTA_SEAL_TARGET static inline __m128i
ota_seal_reverse(__m128i block)
{
    const __m128i order = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm_shuffle_epi8(block, order);
}

/* 128-bit right shift by 1..63 (SSE shifts bits only within 64-bit lanes). */
OTA_SEAL_TARGET static inline __m128i
ota_seal_shift_right(__m128i value, int count)
{
    __m128i carried = _mm_slli_epi64(_mm_srli_si128(value, 8), 64 - count);
    return _mm_or_si128(_mm_srli_epi64(value, count), carried);
}

/* An unreduced carry-less product, or a sum of them: hi:lo = 2^128 hi + lo, mid at 2^64. */
struct ota_seal_wide {
    __m128i hi;
    __m128i mid;
    __m128i lo;
};

/* Adds a * b (reflected, unreduced) to `sum`: schoolbook, four 64x64 products. */
OTA_SEAL_TARGET static inline void
ota_seal_multiply_add(struct ota_seal_wide *sum, __m128i a, __m128i b)
{
    sum->lo = _mm_xor_si128(sum->lo, _mm_clmulepi64_si128(a, b, 0x00));
    sum->hi = _mm_xor_si128(sum->hi, _mm_clmulepi64_si128(a, b, 0x11));
    sum->mid = _mm_xor_si128(sum->mid, _mm_clmulepi64_si128(a, b, 0x01));
    sum->mid = _mm_xor_si128(sum->mid, _mm_clmulepi64_si128(a, b, 0x10));
}

/*
 * Reduces a sum of products to one reflected field element. With the 256-bit value D (the
 * product shifted left by one), high half P0 and low half X, the terms of X are x^128 times
 * a polynomial; x^128 = 1 + x + x^2 + x^7, and a right shift multiplies by x. The shifts
 * X>>1, X>>2 and X>>7 push bits out below bit 0: those are again terms of x^128 and above,
 * the bits (X<<127) ^ (X<<126) ^ (X<<121), at most 7 of them, which fold once more without
 * spilling. Folding both at once: X' = X ^ spill, result = P0 ^ X' ^ X'>>1 ^ X'>>2 ^ X'>>7.
 */
OTA_SEAL_TARGET static inline __m128i
ota_seal_reduce(const struct ota_seal_wide *sum)
{
    __m128i lo = _mm_xor_si128(sum->lo, _mm_slli_si128(sum->mid, 8));
    __m128i hi = _mm_xor_si128(sum->hi, _mm_srli_si128(sum->mid, 8));

    /* D = (hi:lo) << 1. */
    __m128i top_of_lo = _mm_srli_epi64(_mm_srli_si128(lo, 8), 63);
    __m128i low_carry = _mm_srli_epi64(_mm_slli_si128(lo, 8), 63);
    __m128i high_carry = _mm_srli_epi64(_mm_slli_si128(hi, 8), 63);
    __m128i upper = _mm_or_si128(_mm_or_si128(_mm_slli_epi64(hi, 1), high_carry), top_of_lo);
    __m128i lower = _mm_or_si128(_mm_slli_epi64(lo, 1), low_carry);

    /* The spill: only bits 0..6 of X can land at 121..127, all in the upper lane. */
    __m128i moved = _mm_slli_si128(lower, 8);
    __m128i spill = _mm_xor_si128(_mm_slli_epi64(moved, 63), _mm_slli_epi64(moved, 62));
    spill = _mm_xor_si128(spill, _mm_slli_epi64(moved, 57));
    __m128i folded = _mm_xor_si128(lower, spill);

    __m128i result = _mm_xor_si128(upper, folded);
    result = _mm_xor_si128(result, ota_seal_shift_right(folded, 1));
    result = _mm_xor_si128(result, ota_seal_shift_right(folded, 2));
    return _mm_xor_si128(result, ota_seal_shift_right(folded, 7));
}

OTA_SEAL_TARGET static inline __m128i
ota_seal_multiply(__m128i a, __m128i b)
{
    struct ota_seal_wide sum = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()};
    ota_seal_multiply_add(&sum, a, b);
    return ota_seal_reduce(&sum);
}

/* ---- AES ----------------------------------------------------------------------------------- */

/*
 * One step of the FIPS 197 key expansion on whole round keys: each word of the new key is the
 * previous key's word XOR every earlier word of it (the three shifts), XOR the transformed
 * word `assist` broadcast from the lane aeskeygenassist left it in.
 */
OTA_SEAL_TARGET static inline __m128i
ota_seal_expand(__m128i previous, __m128i assist)
{
    previous = _mm_xor_si128(previous, _mm_slli_si128(previous, 4));
    previous = _mm_xor_si128(previous, _mm_slli_si128(previous, 4));
    previous = _mm_xor_si128(previous, _mm_slli_si128(previous, 4));
    return _mm_xor_si128(previous, assist);
}

/* AES-128: each key from the one before, RotWord+SubWord of its last word with the round
 * constant (lane 3 of aeskeygenassist). The constant must be an immediate, hence the macro. */
#define OTA_SEAL_NEXT128(keys, index, rcon)                                                    \
    (keys)[index] = ota_seal_expand(                                                           \
        (keys)[(index) - 1],                                                                   \
        _mm_shuffle_epi32(_mm_aeskeygenassist_si128((keys)[(index) - 1], rcon), 0xff))

OTA_SEAL_TARGET static void
ota_seal_expand128(const unsigned char *key, __m128i round[15])
{
    round[0] = _mm_loadu_si128((const __m128i *)key);
    OTA_SEAL_NEXT128(round, 1, 0x01);
    OTA_SEAL_NEXT128(round, 2, 0x02);
    OTA_SEAL_NEXT128(round, 3, 0x04);
    OTA_SEAL_NEXT128(round, 4, 0x08);
    OTA_SEAL_NEXT128(round, 5, 0x10);
    OTA_SEAL_NEXT128(round, 6, 0x20);
    OTA_SEAL_NEXT128(round, 7, 0x40);
    OTA_SEAL_NEXT128(round, 8, 0x80);
    OTA_SEAL_NEXT128(round, 9, 0x1b);
    OTA_SEAL_NEXT128(round, 10, 0x36);
}

/* AES-256: even keys as AES-128's from the key two back, with RotWord+SubWord and the
 * constant on the previous key's last word; odd keys with SubWord alone (lane 2). */
#define OTA_SEAL_NEXT256(keys, index, rcon)                                                    \
    do {                                                                                       \
        (keys)[index] = ota_seal_expand(                                                       \
            (keys)[(index) - 2],                                                               \
            _mm_shuffle_epi32(_mm_aeskeygenassist_si128((keys)[(index) - 1], rcon), 0xff));    \
        (keys)[(index) + 1] = ota_seal_expand(                                                 \
            (keys)[(index) - 1],                                                               \
            _mm_shuffle_epi32(_mm_aeskeygenassist_si128((keys)[index], 0x00), 0xaa));          \
    } while (0)

OTA_SEAL_TARGET static void
ota_seal_expand256(const unsigned char *key, __m128i round[15])
{
    round[0] = _mm_loadu_si128((const __m128i *)key);
    round[1] = _mm_loadu_si128((const __m128i *)(key + 16));
    OTA_SEAL_NEXT256(round, 2, 0x01);
    OTA_SEAL_NEXT256(round, 4, 0x02);
    OTA_SEAL_NEXT256(round, 6, 0x04);
    OTA_SEAL_NEXT256(round, 8, 0x08);
    OTA_SEAL_NEXT256(round, 10, 0x10);
    OTA_SEAL_NEXT256(round, 12, 0x20);
    /* The last step makes only key 14: its odd partner would be key 15. */
    round[14] = ota_seal_expand(
        round[12], _mm_shuffle_epi32(_mm_aeskeygenassist_si128(round[13], 0x40), 0xff));
}

OTA_SEAL_TARGET static inline __m128i
ota_seal_encrypt_block(const struct ota_seal_keys *keys, __m128i block)
{
    block = _mm_xor_si128(block, keys->round[0]);
    for (int index = 1; index < keys->rounds; index++) {
        block = _mm_aesenc_si128(block, keys->round[index]);
    }
    return _mm_aesenclast_si128(block, keys->round[keys->rounds]);
}

/* ---- GCM ----------------------------------------------------------------------------------- */

/* Loads the sealer's stored schedule and powers into registers' worth of memory. */
OTA_SEAL_TARGET static void
ota_seal_load(const struct ota_record_sealer *sealer, struct ota_seal_keys *keys)
{
    keys->rounds = sealer->rounds;
    for (int index = 0; index <= sealer->rounds; index++) {
        keys->round[index] = _mm_loadu_si128((const __m128i *)sealer->round_keys[index]);
    }
    for (int index = 0; index < OTA_RECORD_SEAL_POWERS; index++) {
        keys->power[index] = _mm_loadu_si128((const __m128i *)sealer->hash_powers[index]);
    }
}

/* The key schedule, H = E(K, 0^128) and its powers, stored into the sealer. */
OTA_SEAL_TARGET static void
ota_seal_schedule(struct ota_record_sealer *sealer, const unsigned char *key, size_t key_length)
{
    struct ota_seal_keys keys;
    keys.rounds = key_length == 32 ? 14 : 10;
    if (key_length == 32) {
        ota_seal_expand256(key, keys.round);
    } else {
        ota_seal_expand128(key, keys.round);
    }

    __m128i hash_key = ota_seal_reverse(ota_seal_encrypt_block(&keys, _mm_setzero_si128()));
    __m128i power = hash_key;
    for (int index = 0; index < OTA_RECORD_SEAL_POWERS; index++) {
        _mm_storeu_si128((__m128i *)sealer->hash_powers[index], power);
        power = ota_seal_multiply(power, hash_key);
    }
    for (int index = 0; index <= keys.rounds; index++) {
        _mm_storeu_si128((__m128i *)sealer->round_keys[index], keys.round[index]);
    }
    sealer->rounds = keys.rounds;
    ota_seal_zeroize(&keys, sizeof(keys));
    hash_key = power = _mm_setzero_si128();
}

/* Up to 16 bytes as a zero-padded block. */
OTA_SEAL_TARGET static inline __m128i
ota_seal_load_partial(const unsigned char *bytes, size_t length)
{
    unsigned char block[16] = {0};
    memcpy(block, bytes, length);
    return _mm_loadu_si128((const __m128i *)block);
}

/* GHASH over bytes, one block at a time (the AAD, and the few blocks of a record's tail). */
OTA_SEAL_TARGET static __m128i
ota_seal_hash_bytes(const struct ota_seal_keys *keys, __m128i state, const unsigned char *bytes,
                    size_t length)
{
    for (size_t offset = 0; offset < length; offset += 16) {
        size_t take = length - offset < 16 ? length - offset : 16;
        __m128i block = take == 16 ? _mm_loadu_si128((const __m128i *)(bytes + offset))
                                   : ota_seal_load_partial(bytes + offset, take);
        state = ota_seal_multiply(_mm_xor_si128(state, ota_seal_reverse(block)), keys->power[0]);
    }
    return state;
}

/* The counter block `step` after `counter` (reflected; inc32 acts on its low lane). */
OTA_SEAL_TARGET static inline __m128i
ota_seal_counter(__m128i counter, int step)
{
    return ota_seal_reverse(_mm_add_epi32(counter, _mm_set_epi32(0, 0, 0, step)));
}

/*
 * Eight blocks at a time. Each round encrypts eight counter blocks side by side; between
 * the rounds, the previous eight ciphertext blocks are folded into the hash as
 * (Y ^ C1) H^8 ^ C2 H^7 ^ ... ^ C8 H, one product per round and a single reduction, so that
 * the multiplier works while the AES unit does. Returns the hash state over everything
 * encrypted; `*counter` moves past the blocks used; `*done` says how many bytes were handled.
 */
OTA_SEAL_TARGET static __m128i
ota_seal_bulk(const struct ota_seal_keys *keys, __m128i state, __m128i *counter,
              const unsigned char *input, size_t length, unsigned char *output, size_t *done)
{
    __m128i pending[8]; /* the last batch's ciphertext, reflected; hashed with the next */
    int have_pending = 0;
    size_t offset = 0;
    for (; length - offset >= 128; offset += 128) {
        __m128i blocks[8];
        for (int lane = 0; lane < 8; lane++) {
            blocks[lane] = _mm_xor_si128(ota_seal_counter(*counter, lane), keys->round[0]);
        }
        *counter = _mm_add_epi32(*counter, _mm_set_epi32(0, 0, 0, 8));

        struct ota_seal_wide sum = {_mm_setzero_si128(), _mm_setzero_si128(),
                                    _mm_setzero_si128()};
        if (have_pending) {
            pending[0] = _mm_xor_si128(pending[0], state);
        }
        for (int index = 1; index < keys->rounds; index++) {
            __m128i round = keys->round[index];
            for (int lane = 0; lane < 8; lane++) {
                blocks[lane] = _mm_aesenc_si128(blocks[lane], round);
            }
            if (have_pending && index <= 8) {
                ota_seal_multiply_add(&sum, pending[index - 1], keys->power[8 - index]);
            }
        }
        if (have_pending) {
            state = ota_seal_reduce(&sum);
        }

        __m128i last = keys->round[keys->rounds];
        for (int lane = 0; lane < 8; lane++) {
            const __m128i *source = (const __m128i *)(input + offset + 16 * lane);
            __m128i cipher = _mm_xor_si128(_mm_aesenclast_si128(blocks[lane], last),
                                           _mm_loadu_si128(source));
            _mm_storeu_si128((__m128i *)(output + offset + 16 * lane), cipher);
            pending[lane] = ota_seal_reverse(cipher);
        }
        have_pending = 1;
    }

    if (have_pending) {
        struct ota_seal_wide sum = {_mm_setzero_si128(), _mm_setzero_si128(),
                                    _mm_setzero_si128()};
        pending[0] = _mm_xor_si128(pending[0], state);
        for (int lane = 0; lane < 8; lane++) {
            ota_seal_multiply_add(&sum, pending[lane], keys->power[7 - lane]);
        }
        state = ota_seal_reduce(&sum);
    }
    *done = offset;
    return state;
}

/* The last bytes, fewer than eight blocks: one block at a time, the final one partial. */
OTA_SEAL_TARGET static __m128i
ota_seal_tail(const struct ota_seal_keys *keys, __m128i state, __m128i counter,
              const unsigned char *input, size_t length, unsigned char *output)
{
    for (size_t offset = 0; offset < length; offset += 16) {
        size_t take = length - offset < 16 ? length - offset : 16;
        __m128i stream = ota_seal_encrypt_block(keys, ota_seal_counter(counter, 0));
        counter = _mm_add_epi32(counter, _mm_set_epi32(0, 0, 0, 1));
        unsigned char block[16] = {0};
        memcpy(block, input + offset, take);
        __m128i cipher = _mm_xor_si128(stream, _mm_loadu_si128((const __m128i *)block));
        _mm_storeu_si128((__m128i *)block, cipher);
        memcpy(output + offset, block, take);
        /* GHASH pads the last block with zeros: the key stream beyond `take` must go. */
        state = ota_seal_hash_bytes(keys, state, block, take);
    }
    return state;
}

/*
 * GCM encryption with a 96-bit IV: J0 = IV || 1, the data under counters from inc32(J0),
 * tag = GHASH(AAD, C, lengths) ^ E(K, J0). Lengths are checked by the callers.
 */
OTA_SEAL_TARGET static void
ota_seal_gcm(const struct ota_seal_keys *keys, const unsigned char iv[12],
             const unsigned char *aad, size_t aad_length, const unsigned char *input,
             size_t length, unsigned char *output, unsigned char tag[16])
{
    unsigned char first[16];
    memcpy(first, iv, 12);
    first[12] = 0;
    first[13] = 0;
    first[14] = 0;
    first[15] = 1;
    __m128i initial = _mm_loadu_si128((const __m128i *)first);
    __m128i counter = _mm_add_epi32(ota_seal_reverse(initial), _mm_set_epi32(0, 0, 0, 1));

    __m128i state = ota_seal_hash_bytes(keys, _mm_setzero_si128(), aad, aad_length);
    size_t done = 0;
    state = ota_seal_bulk(keys, state, &counter, input, length, output, &done);
    state = ota_seal_tail(keys, state, counter, input + done, length - done, output + done);

    __m128i lengths = _mm_set_epi64x((long long)((uint64_t)aad_length * 8),
                                     (long long)((uint64_t)length * 8));
    state = ota_seal_multiply(_mm_xor_si128(state, lengths), keys->power[0]);
    __m128i mask = ota_seal_encrypt_block(keys, initial);
    _mm_storeu_si128((__m128i *)tag, _mm_xor_si128(ota_seal_reverse(state), mask));
}

/* Loads the keys, seals, and wipes the copy on the stack. */
OTA_SEAL_TARGET static void
ota_seal_run(const struct ota_record_sealer *sealer, const unsigned char iv[12],
             const unsigned char *aad, size_t aad_length, const unsigned char *input,
             size_t length, unsigned char *output, unsigned char tag[16])
{
    struct ota_seal_keys keys;
    ota_seal_load(sealer, &keys);
    ota_seal_gcm(&keys, iv, aad, aad_length, input, length, output, tag);
    ota_seal_zeroize(&keys, sizeof(keys));
}

const char *
ota_record_seal_unavailable(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") &&
        __builtin_cpu_supports("ssse3") && __builtin_cpu_supports("sse4.1")) {
        return NULL;
    }
    return "this CPU has no AES-NI and PCLMULQDQ";
}

#else /* not x86-64 */

/* No sealer: mbedTLS keeps encrypting. These are never reached while unavailable says so. */
struct ota_seal_keys;

static void
ota_seal_schedule(struct ota_record_sealer *sealer, const unsigned char *key, size_t key_length)
{
}

static void
ota_seal_run(const struct ota_record_sealer *sealer, const unsigned char iv[12],
             const unsigned char *aad, size_t aad_length, const unsigned char *input,
             size_t length, unsigned char *output, unsigned char tag[16])
{
}

const char *
ota_record_seal_unavailable(void)
{
    return "no AES-GCM sealer for this architecture";
}

#endif /* __x86_64__ */

/* ---- the callers' side --------------------------------------------------------------------- */

int
ota_record_sealer_init(struct ota_record_sealer *sealer, const unsigned char *key,
                       size_t key_length, const unsigned char salt[4],
                       const unsigned char sequence[8])
{
    memset(sealer, 0, sizeof(*sealer));
    if ((key_length != 16 && key_length != 32) || ota_record_seal_unavailable() != NULL) {
        return OTA_ERR_USAGE;
    }
    ota_seal_schedule(sealer, key, key_length);
    memcpy(sealer->salt, salt, 4);
    sealer->sequence = ota_seal_get64(sequence);
    return OTA_OK;
}

int
ota_record_seal(struct ota_record_sealer *sealer, unsigned char type,
                const unsigned char *plaintext, size_t length, unsigned char *record,
                size_t capacity, size_t *record_length)
{
    *record_length = 0;
    if (length > OTA_RECORD_SEAL_MAX_PLAINTEXT || capacity < length + OTA_RECORD_SEAL_OVERHEAD ||
        sealer->rounds == 0) {
        return OTA_ERR_USAGE;
    }
    if (sealer->exhausted) {
        /* Another record would reuse a nonce under the same key (SP 800-38D 8). */
        return OTA_ERR_INTERNAL;
    }

    /* Header: type, version 3.3, length of explicit nonce + ciphertext + tag. */
    size_t body = 8 + length + 16;
    record[0] = type;
    record[1] = 3;
    record[2] = 3;
    record[3] = (unsigned char)(body >> 8);
    record[4] = (unsigned char)body;

    /* RFC 5288 3: nonce = salt || explicit part; the explicit part is the sequence number,
     * as mbedTLS and the kernel send it. RFC 5246 6.2.3.3: AAD = seq || type || version ||
     * plaintext length. */
    unsigned char nonce[12];
    unsigned char aad[13];
    memcpy(nonce, sealer->salt, 4);
    ota_seal_put64(nonce + 4, sealer->sequence);
    memcpy(record + 5, nonce + 4, 8);
    memcpy(aad, nonce + 4, 8);
    memcpy(aad + 8, record, 3);
    aad[11] = (unsigned char)(length >> 8);
    aad[12] = (unsigned char)length;

    ota_seal_run(sealer, nonce, aad, sizeof(aad), plaintext, length, record + 13,
                 record + 13 + length);
    if (sealer->sequence == UINT64_MAX) {
        sealer->exhausted = 1;
    } else {
        sealer->sequence++;
    }
    *record_length = 5 + body;
    return OTA_OK;
}

int
ota_record_seal_gcm(const unsigned char *key, size_t key_length, const unsigned char iv[12],
                    const unsigned char *aad, size_t aad_length, const unsigned char *input,
                    size_t length, unsigned char *output, unsigned char tag[16])
{
    /* The 32-bit block counter starts at 2 and must not wrap: fewer than 2^32 - 2 blocks. */
    if ((uint64_t)length > ((uint64_t)1 << 32) * 16 - 64) {
        return OTA_ERR_USAGE;
    }
    static const unsigned char no_sequence[8] = {0};
    static const unsigned char no_salt[4] = {0};
    struct ota_record_sealer sealer;
    int status = ota_record_sealer_init(&sealer, key, key_length, no_salt, no_sequence);
    if (status == OTA_OK) {
        ota_seal_run(&sealer, iv, aad, aad_length, input, length, output, tag);
    }
    ota_record_sealer_wipe(&sealer);
    return status;
}

/* ---- for the tests (ota_core_testing.h) ---------------------------------------------------- */

const char *
ota_testing_seal_unavailable(void)
{
    return ota_record_seal_unavailable();
}

int
ota_testing_aes_gcm(int engine, const uint8_t *key, size_t key_length, const uint8_t iv[12],
                    const uint8_t *aad, size_t aad_length, const uint8_t *input, size_t length,
                    uint8_t *output, uint8_t tag[16])
{
    static const uint8_t nothing[1] = {0};
    uint8_t scratch[1];
    if (key == NULL || iv == NULL || tag == NULL || (aad == NULL && aad_length > 0) ||
        ((input == NULL || output == NULL) && length > 0)) {
        return OTA_ERR_USAGE;
    }
    aad = aad != NULL ? aad : nothing;
    input = input != NULL ? input : nothing;
    output = output != NULL ? output : scratch;
    if (engine == OTA_TESTING_GCM_LIBRARY) {
        return ota_tls_aes_gcm_reference(key, key_length, iv, aad, aad_length, input, length,
                                         output, tag);
    }
    return ota_record_seal_gcm(key, key_length, iv, aad, aad_length, input, length, output,
                               tag);
}

int
ota_testing_seal_records(const uint8_t *key, size_t key_length, const uint8_t salt[4],
                         uint64_t sequence, uint8_t type, const uint8_t *plaintext,
                         size_t length, unsigned count, uint8_t *records, size_t capacity,
                         size_t *used)
{
    static const uint8_t nothing[1] = {0};
    *used = 0;
    unsigned char start[8];
    ota_seal_put64(start, sequence);
    struct ota_record_sealer sealer;
    int status = ota_record_sealer_init(&sealer, key, key_length, salt, start);
    for (unsigned index = 0; status == OTA_OK && index < count; index++) {
        size_t record_length = 0;
        status = ota_record_seal(&sealer, type, plaintext != NULL ? plaintext : nothing, length,
                                 records + *used, capacity - *used, &record_length);
        *used += record_length;
    }
    ota_record_sealer_wipe(&sealer);
    return status;
}
