/*
 * fuzz/app_image.c - libFuzzer target for ota_app_image_check, the ESP-IDF app image checker
 * the agent runs over the image at start.
 *
 * The checker reads a file that may be far larger than memory, so beyond surviving any bytes
 * it must read only within the file, in bounded blocks, front to back (about one pass), and its
 * answers must be consistent: what a valid verdict reports is what the bytes say, a refusal
 * always says why, bytes after a valid image leave it valid, and an image cut short is always
 * refused. Random bytes rarely carry a right checksum, so each input is also checked once more
 * with its checksum byte and SHA-256 put right (their places found by an independent walk of
 * the segment headers), which lets the fuzzer reach the checks behind them.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ota_core.h"

#define FUZZ_CHECK(condition)                                                                   \
    do {                                                                                        \
        if (!(condition)) {                                                                     \
            fprintf(stderr, "app_image: invariant failed at line %d: %s\n", __LINE__,           \
                    #condition);                                                                \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

/* A source that checks how it is read. */
struct source {
    const uint8_t *bytes;
    size_t size;
    uint64_t bytes_read;
};

static int
source_read(void *context, uint64_t offset, uint8_t *buffer, size_t length)
{
    struct source *source = context;
    FUZZ_CHECK(length > 0 && length <= 4096);
    FUZZ_CHECK(offset <= source->size && length <= source->size - offset);
    memcpy(buffer, source->bytes + offset, length);
    source->bytes_read += length;
    return OTA_OK;
}

struct verdict {
    int status;
    ota_app_image_info info;
    char detail[512];
};

static struct verdict
check(const uint8_t *bytes, size_t size)
{
    struct verdict verdict;
    memset(&verdict, 0xA5, sizeof(verdict)); /* outputs left unset show */
    struct source source = {bytes, size, 0};
    verdict.detail[0] = '\0';
    verdict.status = ota_app_image_check(source_read, &source, size, &verdict.info,
                                         verdict.detail, sizeof(verdict.detail));
    /* One pass: only the magic byte is read twice (a peek before the header). */
    FUZZ_CHECK(source.bytes_read <= (uint64_t)size + 1);
    return verdict;
}

static int
is_text(const char *field, size_t capacity)
{
    const char *end = memchr(field, '\0', capacity);
    if (end == NULL) {
        return 0;
    }
    for (const char *at = field; at < end; at++) {
        if (*at < 0x20 || *at > 0x7e) {
            return 0;
        }
    }
    return 1;
}

/* What one verdict promises on its own. */
static void
check_verdict(const struct verdict *verdict, const uint8_t *bytes, size_t size)
{
    const ota_app_image_info *info = &verdict->info;
    if (verdict->status != OTA_OK) {
        FUZZ_CHECK(verdict->status == OTA_ERR_CONFIG);
        FUZZ_CHECK(verdict->detail[0] != '\0');
        FUZZ_CHECK(memchr(verdict->detail, '\0', sizeof(verdict->detail)) != NULL);
        FUZZ_CHECK(info->chip_name == NULL && info->image_length == 0 && info->segment_count == 0);
        return;
    }
    FUZZ_CHECK(size >= 24 + 8 + 256 + 1 && bytes[0] == 0xE9);
    FUZZ_CHECK(info->image_length <= size && info->trailing_bytes == size - info->image_length);
    FUZZ_CHECK(info->image_length % 16 == 0);
    FUZZ_CHECK(info->segment_count >= 1 && info->segment_count <= OTA_APP_IMAGE_MAX_SEGMENTS);
    FUZZ_CHECK(info->segment_count == bytes[1]);
    FUZZ_CHECK(info->chip_name != NULL && info->chip_name == ota_app_image_chip_name(info->chip_id));
    FUZZ_CHECK(info->spi_mode <= 3 && info->spi_size <= 7 && info->entry_point != 0);
    FUZZ_CHECK(info->hash_appended == bytes[23] && info->hash_appended <= 1);
    size_t checksum_at = info->image_length - 1 - (info->hash_appended ? 32 : 0);
    FUZZ_CHECK(info->checksum == bytes[checksum_at]);
    if (info->hash_appended) {
        FUZZ_CHECK(memcmp(info->appended_sha256, bytes + checksum_at + 1, 32) == 0);
    }
    FUZZ_CHECK(is_text(info->project_name, sizeof(info->project_name)));
    FUZZ_CHECK(is_text(info->version, sizeof(info->version)));
    FUZZ_CHECK(is_text(info->idf_version, sizeof(info->idf_version)));
    FUZZ_CHECK(is_text(info->compile_date, sizeof(info->compile_date)));
    FUZZ_CHECK(is_text(info->compile_time, sizeof(info->compile_time)));
}

/* The same bytes through the other entry point, and without the optional outputs. */
static void
check_entry_points(const struct verdict *verdict, const uint8_t *bytes, size_t size)
{
    ota_app_image_info info;
    FUZZ_CHECK(ota_app_image_check_bytes(bytes, size, &info, NULL, 0) == verdict->status);
    FUZZ_CHECK(memcmp(&info, &verdict->info, sizeof(info)) == 0);
    char detail[512];
    FUZZ_CHECK(ota_app_image_check_bytes(bytes, size, NULL, detail, sizeof(detail)) ==
               verdict->status);
    if (verdict->status != OTA_OK) {
        FUZZ_CHECK(strcmp(detail, verdict->detail) == 0);
    }
}

/* A valid image stays valid with bytes after it, and is refused when cut short. */
static void
check_length_changes(const struct verdict *verdict, const uint8_t *bytes, size_t size)
{
    if (verdict->status != OTA_OK) {
        return;
    }
    size_t length = (size_t)verdict->info.image_length;
    struct verdict exact = check(bytes, length);
    FUZZ_CHECK(exact.status == OTA_OK && exact.info.trailing_bytes == 0);
    FUZZ_CHECK(exact.info.chip_id == verdict->info.chip_id);
    FUZZ_CHECK(strcmp(exact.info.project_name, verdict->info.project_name) == 0);
    struct verdict cut = check(bytes, length - 1);
    FUZZ_CHECK(cut.status == OTA_ERR_CONFIG && strncmp(cut.detail, "truncated: ", 11) == 0);
}

static uint32_t
le32(const uint8_t *bytes)
{
    return (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8 | (uint32_t)bytes[2] << 16 |
           (uint32_t)bytes[3] << 24;
}

/*
 * Restated from the format, not from app_image.c: walks the segment headers and, when every
 * segment fits, writes the right checksum byte and (flag 1, room for it) the right SHA-256
 * into `bytes`. Returns 1 when it repaired something.
 */
static int
repair(uint8_t *bytes, size_t size)
{
    if (size < 24 || bytes[0] != 0xE9 || bytes[1] == 0 || bytes[1] > 16) {
        return 0;
    }
    size_t position = 24;
    uint8_t checksum = 0xEF;
    for (unsigned index = 0; index < bytes[1]; index++) {
        if (size - position < 8) {
            return 0;
        }
        uint32_t length = le32(bytes + position + 4);
        position += 8;
        if (length > size - position) {
            return 0;
        }
        for (uint32_t at = 0; at < length; at++) {
            checksum ^= bytes[position + at];
        }
        position += length;
    }
    position += 15 - position % 16;
    if (position >= size) {
        return 0;
    }
    bytes[position] = checksum;
    if (bytes[23] == 1 && size - position - 1 >= 32) {
        ota_sha256(bytes, position + 1, bytes + position + 1);
    }
    return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Copied so that ASan sees an overread of exactly the input's end. */
    uint8_t *bytes = malloc(size > 0 ? size : 1);
    if (bytes == NULL) {
        return 0;
    }
    memcpy(bytes, data, size);

    struct verdict verdict = check(bytes, size);
    check_verdict(&verdict, bytes, size);
    check_entry_points(&verdict, bytes, size);
    check_length_changes(&verdict, bytes, size);

    if (repair(bytes, size)) {
        struct verdict repaired = check(bytes, size);
        check_verdict(&repaired, bytes, size);
        check_length_changes(&repaired, bytes, size);
        /* Put right, neither can be what is wrong. */
        FUZZ_CHECK(strncmp(repaired.detail, "checksum byte is", 16) != 0);
        if (bytes[23] == 1) {
            FUZZ_CHECK(repaired.status == OTA_OK ||
                       strncmp(repaired.detail, "appended SHA-256 is", 19) != 0);
        }
    }

    free(bytes);
    return 0;
}
