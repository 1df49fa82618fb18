/*
 * app_image.c - the ESP-IDF application image format: checked before the agent serves a file.
 *
 * Layout (ESP-IDF's esp_image_format.h and esp_app_format.h; esptool writes the same):
 *   24-byte header    magic 0xE9, segment count, SPI mode, SPI speed (low nibble) and size
 *                     (high nibble), entry point (LE32), then the extended header: WP pin, three
 *                     drive-strength bytes, chip id (LE16), legacy min revision, min and max
 *                     revision as major * 100 + minor (LE16 each), 4 reserved bytes, and the
 *                     hash-appended flag
 *   segments          each an 8-byte header (load address, data length; LE32) and its data
 *   padding           zeros up to the last byte of a 16-byte block, which is the checksum:
 *                     0xEF XOR every byte of segment data
 *   SHA-256           32 bytes over everything before it, when the flag is 1
 * The first segment's data starts with esp_app_desc_t (256 bytes, magic 0xABCD5432): secure
 * version, version, project name, compile time and date, IDF version, ...
 *
 * The file is walked front to back once through the caller's read function, a block at a
 * time, so a 70 MiB image costs 4 KiB of memory; the checksum and the SHA-256 are computed on
 * the way.
 */

#include <stdio.h>
#include <string.h>

#include "ota_internal.h"

#define OTA_APP_HEADER_LENGTH 24
#define OTA_APP_SEGMENT_HEADER_LENGTH 8
#define OTA_APP_MAGIC 0xE9
#define OTA_APP_CHECKSUM_SEED 0xEF
#define OTA_APP_DESC_MAGIC 0xABCD5432u
#define OTA_APP_DESC_LENGTH 256
#define OTA_APP_SHA256_LENGTH 32
#define OTA_APP_BLOCK 4096

/* Frequency codes as a bit mask: bit n set when code n is one the chip's ROM knows. */
#define OTA_FREQ(code) (1u << (code))
#define OTA_FREQ_ALL (OTA_FREQ(0x0) | OTA_FREQ(0x1) | OTA_FREQ(0x2) | OTA_FREQ(0xF))

/*
 * The ESP32 family as esptool 5.6 knows it (per target: IMAGE_CHIP_ID, FLASH_FREQUENCY, and the
 * DROM entry of MEMORY_MAP: where flash is mapped as read-only data, which is where ESP-IDF
 * links the application description, first in the image).
 */
static const struct ota_app_chip {
    uint16_t id;
    const char *name;
    uint32_t frequencies;
    uint32_t drom_start;
    uint32_t drom_end;
} ota_app_chips[] = {
    {0, "ESP32", OTA_FREQ_ALL, 0x3F400000, 0x3F800000},
    {2, "ESP32-S2", OTA_FREQ_ALL, 0x3F000000, 0x3FF80000},
    {5, "ESP32-C3", OTA_FREQ_ALL, 0x3C000000, 0x3C800000},
    {9, "ESP32-S3", OTA_FREQ_ALL, 0x3C000000, 0x3D000000},
    {12, "ESP32-C2", OTA_FREQ_ALL, 0x3C000000, 0x3C400000},
    {13, "ESP32-C6", OTA_FREQ(0x0) | OTA_FREQ(0x2), 0x42000000, 0x43000000},
    {16, "ESP32-H2", OTA_FREQ_ALL, 0x42000000, 0x43000000},
    {18, "ESP32-P4", OTA_FREQ_ALL, 0x40000000, 0x4C000000},
    {20, "ESP32-C61", OTA_FREQ(0x0) | OTA_FREQ(0x2) | OTA_FREQ(0xF), 0x42000000, 0x44000000},
    {23, "ESP32-C5", OTA_FREQ(0x0) | OTA_FREQ(0x2) | OTA_FREQ(0xF), 0x42000000, 0x44000000},
    {25, "ESP32-H21", OTA_FREQ(0x0) | OTA_FREQ(0xF), 0x42000000, 0x43000000},
    {28, "ESP32-H4", OTA_FREQ(0x0) | OTA_FREQ(0xF), 0x42000000, 0x44000000},
    {31, "ESP32-E22", OTA_FREQ_ALL, 0x3C000000, 0x40000000},
    {32, "ESP32-S31", OTA_FREQ(0x0) | OTA_FREQ(0x2) | OTA_FREQ(0xF), 0x40000000, 0x54000000},
};

/* One walk over the image: where it is, what it has computed so far. */
struct ota_app_walk {
    ota_app_image_read_fn read;
    void *context;
    uint64_t size;
    uint64_t position;
    uint8_t checksum;
    ota_sha256_ctx *sha256; /* NULL unless the image carries a SHA-256 */
    const struct ota_app_chip *chip;
    char *detail;
    size_t detail_size;
};

static const struct ota_app_chip *
ota_app_chip_find(uint16_t chip_id)
{
    for (size_t index = 0; index < sizeof(ota_app_chips) / sizeof(ota_app_chips[0]); index++) {
        if (ota_app_chips[index].id == chip_id) {
            return &ota_app_chips[index];
        }
    }
    return NULL;
}

const char *
ota_app_image_chip_name(uint16_t chip_id)
{
    const struct ota_app_chip *chip = ota_app_chip_find(chip_id);
    return chip == NULL ? NULL : chip->name;
}

static uint16_t
ota_app_le16(const uint8_t *bytes)
{
    return (uint16_t)(bytes[0] | bytes[1] << 8);
}

static uint32_t
ota_app_le32(const uint8_t *bytes)
{
    return (uint32_t)bytes[0] | (uint32_t)bytes[1] << 8 | (uint32_t)bytes[2] << 16 |
           (uint32_t)bytes[3] << 24;
}

/* A fixed-size C string field as loggable text: up to its first NUL, non-printables as '?'. */
static void
ota_app_text(char *out, size_t capacity, const uint8_t *field, size_t field_length)
{
    size_t length = 0;
    while (length < field_length && length + 1 < capacity && field[length] != 0) {
        uint8_t byte = field[length];
        out[length] = byte >= 0x20 && byte < 0x7f ? (char)byte : '?';
        length++;
    }
    out[length] = '\0';
}

/* The caller's read, with a detail when it fails. */
static int
ota_app_read(struct ota_app_walk *walk, uint64_t offset, uint8_t *buffer, size_t length)
{
    int status = walk->read(walk->context, offset, buffer, length);
    if (status != OTA_OK) {
        ota_detail_set(walk->detail, walk->detail_size, "cannot read the image at offset %llu: %s",
                       (unsigned long long)offset, ota_status_name(status));
    }
    return status;
}

/*
 * Reads the next `length` bytes (the caller has checked that the file holds them): copies them
 * to `out` when not NULL, feeds the SHA-256, and XORs them into the checksum when `in_checksum`.
 */
static int
ota_app_consume(struct ota_app_walk *walk, uint8_t *out, uint64_t length, int in_checksum)
{
    uint8_t block[OTA_APP_BLOCK];
    uint64_t done = 0;
    while (done < length) {
        size_t chunk = length - done < OTA_APP_BLOCK ? (size_t)(length - done) : OTA_APP_BLOCK;
        uint8_t *target = out != NULL ? out + done : block;
        int status = ota_app_read(walk, walk->position, target, chunk);
        if (status != OTA_OK) {
            return status;
        }
        if (walk->sha256 != NULL) {
            status = ota_sha256_update(walk->sha256, target, chunk);
            if (status != OTA_OK) {
                return status;
            }
        }
        for (size_t index = 0; in_checksum && index < chunk; index++) {
            walk->checksum ^= target[index];
        }
        walk->position += chunk;
        done += chunk;
    }
    return OTA_OK;
}

/* Fails with a "truncated" detail when fewer than `length` bytes are left at the position. */
static int
ota_app_require(struct ota_app_walk *walk, uint64_t length, const char *what)
{
    if (length <= walk->size - walk->position) {
        return OTA_OK;
    }
    ota_detail_set(walk->detail, walk->detail_size,
                   "truncated: %s needs %llu bytes at offset %llu, the file ends at %llu", what,
                   (unsigned long long)length, (unsigned long long)walk->position,
                   (unsigned long long)walk->size);
    return OTA_ERR_CONFIG;
}

/* The SPI fields of the header, against what the chip's ROM knows. */
static int
ota_app_check_spi(const uint8_t *header, const struct ota_app_chip *chip,
                  ota_app_image_info *info, char *detail, size_t detail_size)
{
    info->spi_mode = header[2];
    info->spi_speed = header[3] & 0x0f;
    info->spi_size = header[3] >> 4;
    if (info->spi_mode > 3) {
        ota_detail_set(detail, detail_size,
                       "SPI flash mode is %u, not QIO (0), QOUT (1), DIO (2) or DOUT (3)",
                       info->spi_mode);
        return OTA_ERR_CONFIG;
    }
    if (info->spi_size > 7) {
        ota_detail_set(detail, detail_size,
                       "SPI flash size code is 0x%x, not 0x0 to 0x7 (1 MB to 128 MB)",
                       info->spi_size);
        return OTA_ERR_CONFIG;
    }
    if ((chip->frequencies & OTA_FREQ(info->spi_speed)) == 0) {
        ota_detail_set(detail, detail_size, "SPI flash frequency code 0x%x is not one %s knows",
                       info->spi_speed, chip->name);
        return OTA_ERR_CONFIG;
    }
    return OTA_OK;
}

/* The 24-byte header: everything but the segments. */
static int
ota_app_check_header(const uint8_t *header, ota_app_image_info *info, char *detail,
                     size_t detail_size)
{
    if (header[0] != OTA_APP_MAGIC) {
        ota_detail_set(detail, detail_size,
                       "magic byte is 0x%02x, not 0xe9: not an ESP-IDF app image", header[0]);
        return OTA_ERR_CONFIG;
    }
    info->segment_count = header[1];
    if (info->segment_count == 0 || info->segment_count > OTA_APP_IMAGE_MAX_SEGMENTS) {
        ota_detail_set(detail, detail_size, "segment count is %u, not 1 to %d",
                       info->segment_count, OTA_APP_IMAGE_MAX_SEGMENTS);
        return OTA_ERR_CONFIG;
    }
    info->chip_id = ota_app_le16(header + 12);
    const struct ota_app_chip *chip = ota_app_chip_find(info->chip_id);
    if (chip == NULL) {
        ota_detail_set(detail, detail_size, "chip id is %u, not one of the ESP32 family's",
                       info->chip_id);
        return OTA_ERR_CONFIG;
    }
    info->chip_name = chip->name;
    int status = ota_app_check_spi(header, chip, info, detail, detail_size);
    if (status != OTA_OK) {
        return status;
    }
    info->entry_point = ota_app_le32(header + 4);
    if (info->entry_point == 0) {
        ota_detail_set(detail, detail_size, "entry point is 0: not an application");
        return OTA_ERR_CONFIG;
    }
    info->min_chip_revision = ota_app_le16(header + 15);
    info->max_chip_revision = ota_app_le16(header + 17);
    if (header[23] > 1) {
        ota_detail_set(detail, detail_size, "hash-appended flag is 0x%02x, not 0 or 1",
                       header[23]);
        return OTA_ERR_CONFIG;
    }
    info->hash_appended = header[23];
    return OTA_OK;
}

/* esp_app_desc_t: magic, secure version, 8 reserved bytes, then the text fields. */
static int
ota_app_read_description(const uint8_t *desc, ota_app_image_info *info, char *detail,
                         size_t detail_size)
{
    uint32_t magic = ota_app_le32(desc);
    if (magic != OTA_APP_DESC_MAGIC) {
        ota_detail_set(detail, detail_size,
                       "no application description: segment 0 starts with 0x%08x, not "
                       "esp_app_desc_t's magic 0xabcd5432",
                       magic);
        return OTA_ERR_CONFIG;
    }
    info->secure_version = ota_app_le32(desc + 4);
    ota_app_text(info->version, sizeof(info->version), desc + 16, 32);
    ota_app_text(info->project_name, sizeof(info->project_name), desc + 48, 32);
    ota_app_text(info->compile_time, sizeof(info->compile_time), desc + 80, 16);
    ota_app_text(info->compile_date, sizeof(info->compile_date), desc + 96, 16);
    ota_app_text(info->idf_version, sizeof(info->idf_version), desc + 112, 32);
    return OTA_OK;
}

/* One segment: its header, then its data into the checksum (segment 0's description read). */
static int
ota_app_walk_segment(struct ota_app_walk *walk, unsigned index, ota_app_image_info *info)
{
    char what[64];
    snprintf(what, sizeof(what), "segment %u's header", index);
    int status = ota_app_require(walk, OTA_APP_SEGMENT_HEADER_LENGTH, what);
    uint8_t header[OTA_APP_SEGMENT_HEADER_LENGTH];
    if (status == OTA_OK) {
        status = ota_app_consume(walk, header, sizeof(header), 0);
    }
    if (status != OTA_OK) {
        return status;
    }

    uint32_t length = ota_app_le32(header + 4);
    if (length > walk->size - walk->position) {
        ota_detail_set(walk->detail, walk->detail_size,
                       "truncated: segment %u claims %u bytes at offset %llu, the file ends at "
                       "%llu",
                       index, length, (unsigned long long)walk->position,
                       (unsigned long long)walk->size);
        return OTA_ERR_CONFIG;
    }
    if (length % 4 != 0) {
        ota_detail_set(walk->detail, walk->detail_size,
                       "segment %u is %u bytes long, not a multiple of 4", index, length);
        return OTA_ERR_CONFIG;
    }
    if (index > 0) {
        return ota_app_consume(walk, NULL, length, 1);
    }

    uint32_t address = ota_app_le32(header);
    if (address < walk->chip->drom_start || address >= walk->chip->drom_end) {
        ota_detail_set(walk->detail, walk->detail_size,
                       "no application description: segment 0 loads at 0x%08x, outside %s's "
                       "flash-mapped data (0x%08x to 0x%08x), where ESP-IDF puts it",
                       address, walk->chip->name, walk->chip->drom_start, walk->chip->drom_end);
        return OTA_ERR_CONFIG;
    }

    if (length < OTA_APP_DESC_LENGTH) {
        ota_detail_set(walk->detail, walk->detail_size,
                       "no application description: segment 0 is %u bytes, esp_app_desc_t "
                       "needs %d",
                       length, OTA_APP_DESC_LENGTH);
        return OTA_ERR_CONFIG;
    }
    uint8_t desc[OTA_APP_DESC_LENGTH];
    status = ota_app_consume(walk, desc, sizeof(desc), 1);
    if (status == OTA_OK) {
        status = ota_app_read_description(desc, info, walk->detail, walk->detail_size);
    }
    if (status == OTA_OK) {
        status = ota_app_consume(walk, NULL, length - OTA_APP_DESC_LENGTH, 1);
    }
    return status;
}

/* The padding, the checksum byte at the end of its 16-byte block, and the SHA-256 if any. */
static int
ota_app_check_footer(struct ota_app_walk *walk, ota_app_image_info *info)
{
    uint64_t padding = 15 - walk->position % 16;
    int status = ota_app_require(walk, padding + 1, "the padding and checksum byte");
    uint8_t tail[16];
    if (status == OTA_OK) {
        status = ota_app_consume(walk, tail, padding + 1, 0);
    }
    if (status != OTA_OK) {
        return status;
    }
    info->checksum = tail[padding];
    if (info->checksum != walk->checksum) {
        ota_detail_set(walk->detail, walk->detail_size,
                       "checksum byte is 0x%02x, segments give 0x%02x", info->checksum,
                       walk->checksum);
        return OTA_ERR_CONFIG;
    }
    if (!info->hash_appended) {
        return OTA_OK;
    }

    uint8_t computed[OTA_APP_SHA256_LENGTH];
    status = ota_sha256_final(walk->sha256, computed);
    if (status == OTA_OK) {
        status = ota_app_require(walk, OTA_APP_SHA256_LENGTH, "the appended SHA-256");
    }
    if (status == OTA_OK) {
        ota_sha256_free(walk->sha256);
        walk->sha256 = NULL;
        status = ota_app_consume(walk, info->appended_sha256, OTA_APP_SHA256_LENGTH, 0);
    }
    if (status != OTA_OK) {
        return status;
    }
    if (memcmp(computed, info->appended_sha256, OTA_APP_SHA256_LENGTH) != 0) {
        char stored[65], actual[65];
        for (int index = 0; index < OTA_APP_SHA256_LENGTH; index++) {
            snprintf(stored + 2 * index, 3, "%02x", info->appended_sha256[index]);
            snprintf(actual + 2 * index, 3, "%02x", computed[index]);
        }
        ota_detail_set(walk->detail, walk->detail_size,
                       "appended SHA-256 is %s, the image's bytes give %s", stored, actual);
        return OTA_ERR_CONFIG;
    }
    return OTA_OK;
}

static int
ota_app_walk_image(struct ota_app_walk *walk, ota_app_image_info *info)
{
    uint8_t header[OTA_APP_HEADER_LENGTH];
    int status = OTA_OK;
    /* A file of another format is told so by its first byte, however short it is. */
    if (walk->size > 0) {
        status = ota_app_read(walk, 0, header, 1);
        if (status == OTA_OK && header[0] != OTA_APP_MAGIC) {
            return ota_app_check_header(header, info, walk->detail, walk->detail_size);
        }
    }
    if (status == OTA_OK) {
        status = ota_app_require(walk, OTA_APP_HEADER_LENGTH, "the image header");
    }
    if (status == OTA_OK) {
        status = ota_app_read(walk, 0, header, sizeof(header));
    }
    if (status == OTA_OK) {
        status = ota_app_check_header(header, info, walk->detail, walk->detail_size);
    }
    if (status == OTA_OK) {
        walk->chip = ota_app_chip_find(info->chip_id);
    }
    /* Only now is it known whether a SHA-256 is to be computed; the header is its start. */
    if (status == OTA_OK && info->hash_appended) {
        walk->sha256 = ota_sha256_new();
        status = walk->sha256 == NULL ? OTA_ERR_MEMORY : OTA_OK;
        if (status == OTA_OK) {
            status = ota_sha256_update(walk->sha256, header, sizeof(header));
        }
    }
    walk->position = OTA_APP_HEADER_LENGTH;
    for (unsigned index = 0; status == OTA_OK && index < info->segment_count; index++) {
        status = ota_app_walk_segment(walk, index, info);
    }
    if (status == OTA_OK) {
        status = ota_app_check_footer(walk, info);
    }
    return status;
}

int
ota_app_image_check(ota_app_image_read_fn read, void *context, uint64_t size,
                    ota_app_image_info *info, char *detail, size_t detail_size)
{
    ota_app_image_info ignored;
    info = info != NULL ? info : &ignored;
    memset(info, 0, sizeof(*info));
    if (read == NULL) {
        ota_detail_set(detail, detail_size, "no read function");
        return OTA_ERR_USAGE;
    }

    struct ota_app_walk walk = {
        .read = read,
        .context = context,
        .size = size,
        .checksum = OTA_APP_CHECKSUM_SEED,
        .detail = detail,
        .detail_size = detail_size,
    };
    int status = ota_app_walk_image(&walk, info);
    ota_sha256_free(walk.sha256);
    if (status != OTA_OK) {
        memset(info, 0, sizeof(*info));
        return status;
    }
    info->image_length = walk.position;
    info->trailing_bytes = size - walk.position;
    return OTA_OK;
}

struct ota_app_memory {
    const uint8_t *bytes;
    size_t length;
};

static int
ota_app_read_memory(void *context, uint64_t offset, uint8_t *buffer, size_t length)
{
    const struct ota_app_memory *memory = context;
    if (offset > memory->length || length > memory->length - offset) {
        return OTA_ERR_IO;
    }
    memcpy(buffer, memory->bytes + offset, length);
    return OTA_OK;
}

int
ota_app_image_check_bytes(const uint8_t *bytes, size_t length, ota_app_image_info *info,
                          char *detail, size_t detail_size)
{
    if (bytes == NULL && length > 0) {
        if (info != NULL) {
            memset(info, 0, sizeof(*info));
        }
        ota_detail_set(detail, detail_size, "no bytes");
        return OTA_ERR_USAGE;
    }
    struct ota_app_memory memory = {bytes, length};
    return ota_app_image_check(ota_app_read_memory, &memory, length, info, detail, detail_size);
}
