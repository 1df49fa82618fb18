/*
 * cert_identity.c - who a device certificate names, read straight from its DER.
 *
 * Every session logs its device's subject and fingerprint. Building a full X.509 object for
 * that is costly with OpenSSL 3 (it decodes the public key through its provider decoders, as
 * much CPU as an ECDSA handshake) and renders differently per backend. This file walks the
 * DER to the subject and validity and nothing more: no allocation, no library, the same
 * output on both backends. It checks the structure it walks and nothing else (no signature,
 * no extension), which is all a log line needs; Dice-Auth judges the certificate.
 */

#include <stdio.h>
#include <string.h>

#include "ota_internal.h"

#define TAG_INTEGER 0x02
#define TAG_OID 0x06
#define TAG_UTF8_STRING 0x0c
#define TAG_NUMERIC_STRING 0x12
#define TAG_PRINTABLE_STRING 0x13
#define TAG_T61_STRING 0x14
#define TAG_IA5_STRING 0x16
#define TAG_UTC_TIME 0x17
#define TAG_GENERALIZED_TIME 0x18
#define TAG_VISIBLE_STRING 0x1a
#define TAG_UNIVERSAL_STRING 0x1c
#define TAG_BMP_STRING 0x1e
#define TAG_SEQUENCE 0x30
#define TAG_SET 0x31
#define TAG_VERSION 0xa0 /* [0] EXPLICIT, constructed */

/* A window on DER bytes: what is left to read. */
struct der_span {
    const uint8_t *at;
    size_t left;
};

/*
 * Reads one element with a single-byte tag and a definite length (at most four length bytes)
 * from `span`, advancing past it. Returns 0 and fills `tag` and `content`, or -1 when the
 * bytes do not hold a whole element.
 */
static int
der_next(struct der_span *span, uint8_t *tag, struct der_span *content)
{
    if (span->left < 2 || (span->at[0] & 0x1f) == 0x1f) {
        return -1;
    }
    *tag = span->at[0];
    size_t header = 2;
    size_t length = span->at[1];
    if (length & 0x80) {
        size_t count = length & 0x7f;
        if (count == 0 || count > 4 || span->left < 2 + count) {
            return -1;
        }
        length = 0;
        for (size_t index = 0; index < count; index++) {
            length = (length << 8) | span->at[2 + index];
        }
        header += count;
    }
    if (length > span->left - header) {
        return -1;
    }

    content->at = span->at + header;
    content->left = length;
    span->at += header + length;
    span->left -= header + length;
    return 0;
}

/* Reads one element that must carry `expected` as its tag. */
static int
der_expect(struct der_span *span, uint8_t expected, struct der_span *content)
{
    uint8_t tag;
    return der_next(span, &tag, content) == 0 && tag == expected ? 0 : -1;
}

/* Text appended to a fixed buffer; stops cleanly when full and remembers that it did. */
struct text_out {
    char *buffer;
    size_t capacity; /* including the terminating NUL */
    size_t used;
    int full;
};

static void
text_byte(struct text_out *out, uint8_t byte)
{
    if (out->used + 1 >= out->capacity) {
        out->full = 1;
        return;
    }
    out->buffer[out->used++] = (char)byte;
    out->buffer[out->used] = '\0';
}

static void
text_string(struct text_out *out, const char *text)
{
    while (*text != '\0') {
        text_byte(out, (uint8_t)*text++);
    }
}

/* One Unicode code point as UTF-8; invalid ones (surrogates, beyond U+10FFFF) as U+FFFD. */
static void
text_code_point(struct text_out *out, uint32_t point)
{
    if ((point >= 0xd800 && point <= 0xdfff) || point > 0x10ffff) {
        point = 0xfffd;
    }
    if (point < 0x80) {
        text_byte(out, (uint8_t)point);
    } else if (point < 0x800) {
        text_byte(out, (uint8_t)(0xc0 | (point >> 6)));
        text_byte(out, (uint8_t)(0x80 | (point & 0x3f)));
    } else if (point < 0x10000) {
        text_byte(out, (uint8_t)(0xe0 | (point >> 12)));
        text_byte(out, (uint8_t)(0x80 | ((point >> 6) & 0x3f)));
        text_byte(out, (uint8_t)(0x80 | (point & 0x3f)));
    } else {
        text_byte(out, (uint8_t)(0xf0 | (point >> 18)));
        text_byte(out, (uint8_t)(0x80 | ((point >> 12) & 0x3f)));
        text_byte(out, (uint8_t)(0x80 | ((point >> 6) & 0x3f)));
        text_byte(out, (uint8_t)(0x80 | (point & 0x3f)));
    }
}

/* Short names for the attribute types certificates use; others are shown as dotted OIDs. */
static const struct {
    const char *name;
    uint8_t length;
    uint8_t oid[10];
} attribute_names[] = {
    {"CN", 3, {0x55, 0x04, 0x03}},
    {"serialNumber", 3, {0x55, 0x04, 0x05}},
    {"C", 3, {0x55, 0x04, 0x06}},
    {"L", 3, {0x55, 0x04, 0x07}},
    {"ST", 3, {0x55, 0x04, 0x08}},
    {"street", 3, {0x55, 0x04, 0x09}},
    {"O", 3, {0x55, 0x04, 0x0a}},
    {"OU", 3, {0x55, 0x04, 0x0b}},
    {"title", 3, {0x55, 0x04, 0x0c}},
    {"SN", 3, {0x55, 0x04, 0x04}},
    {"GN", 3, {0x55, 0x04, 0x2a}},
    {"emailAddress", 9, {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01}},
    {"UID", 10, {0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01}},
    {"DC", 10, {0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19}},
};

/* An OID's short name, or its dotted decimal form. */
static int
write_attribute_type(struct text_out *out, struct der_span oid)
{
    for (size_t index = 0; index < sizeof(attribute_names) / sizeof(attribute_names[0]); index++) {
        if (oid.left == attribute_names[index].length &&
            memcmp(oid.at, attribute_names[index].oid, oid.left) == 0) {
            text_string(out, attribute_names[index].name);
            return 0;
        }
    }

    uint64_t arc = 0;
    int first = 1;
    for (size_t index = 0; index < oid.left; index++) {
        if (arc > (UINT64_MAX >> 7)) {
            return -1;
        }
        arc = (arc << 7) | (oid.at[index] & 0x7f);
        if (oid.at[index] & 0x80) {
            continue;
        }
        char number[48];
        if (first) {
            uint64_t top = arc < 80 ? arc / 40 : 2;
            snprintf(number, sizeof(number), "%llu.%llu", (unsigned long long)top,
                     (unsigned long long)(arc - top * 40));
            first = 0;
        } else {
            snprintf(number, sizeof(number), ".%llu", (unsigned long long)arc);
        }
        text_string(out, number);
        arc = 0;
    }
    /* An OID must end on a complete arc. */
    return oid.left > 0 && (oid.at[oid.left - 1] & 0x80) == 0 ? 0 : -1;
}

/* Big-endian code units of `width` bytes (2: BMPString, 4: UniversalString) as UTF-8. */
static void
write_wide_string(struct text_out *out, struct der_span value, size_t width)
{
    for (size_t index = 0; index + width <= value.left; index += width) {
        uint32_t point = 0;
        for (size_t byte = 0; byte < width; byte++) {
            point = (point << 8) | value.at[index + byte];
        }
        text_code_point(out, point);
    }
}

/* An attribute value: strings as text (a NUL as "?"), anything else as '#' and hex. */
static void
write_attribute_value(struct text_out *out, uint8_t tag, struct der_span value)
{
    switch (tag) {
    case TAG_UTF8_STRING:
    case TAG_NUMERIC_STRING:
    case TAG_PRINTABLE_STRING:
    case TAG_T61_STRING:
    case TAG_IA5_STRING:
    case TAG_VISIBLE_STRING:
        for (size_t index = 0; index < value.left; index++) {
            text_byte(out, value.at[index] == 0 ? '?' : value.at[index]);
        }
        return;
    case TAG_BMP_STRING:
        write_wide_string(out, value, 2);
        return;
    case TAG_UNIVERSAL_STRING:
        write_wide_string(out, value, 4);
        return;
    default:
        text_byte(out, '#');
        for (size_t index = 0; index < value.left; index++) {
            char pair[3];
            snprintf(pair, sizeof(pair), "%02x", value.at[index]);
            text_string(out, pair);
        }
    }
}

/* A Name as "CN=device, O=Fleet": every attribute in encoded order. */
static int
write_name(struct text_out *out, struct der_span name)
{
    int written = 0;
    while (name.left > 0) {
        struct der_span relative;
        if (der_expect(&name, TAG_SET, &relative) != 0) {
            return -1;
        }
        while (relative.left > 0) {
            struct der_span attribute;
            struct der_span oid;
            struct der_span value;
            uint8_t value_tag;
            if (der_expect(&relative, TAG_SEQUENCE, &attribute) != 0 ||
                der_expect(&attribute, TAG_OID, &oid) != 0 ||
                der_next(&attribute, &value_tag, &value) != 0 || attribute.left != 0) {
                return -1;
            }
            if (written++ > 0) {
                text_string(out, ", ");
            }
            if (write_attribute_type(out, oid) != 0) {
                return -1;
            }
            text_byte(out, '=');
            write_attribute_value(out, value_tag, value);
        }
    }
    return 0;
}

/* Days from 1970-01-01 to a proleptic Gregorian date (the usual era arithmetic). */
static int64_t
days_from_civil(int64_t year, int64_t month, int64_t day)
{
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

/* Reads `count` decimal digits; -1 if any is not a digit. */
static int64_t
read_digits(const uint8_t *text, size_t count)
{
    int64_t value = 0;
    for (size_t index = 0; index < count; index++) {
        if (text[index] < '0' || text[index] > '9') {
            return -1;
        }
        value = value * 10 + (text[index] - '0');
    }
    return value;
}

/* A DER Time (UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ) in epoch seconds. */
static int
read_time(struct der_span *validity, int64_t *seconds)
{
    uint8_t tag;
    struct der_span text;
    if (der_next(validity, &tag, &text) != 0) {
        return -1;
    }

    size_t year_digits = tag == TAG_UTC_TIME ? 2 : tag == TAG_GENERALIZED_TIME ? 4 : 0;
    if (year_digits == 0 || text.left != year_digits + 11 || text.at[text.left - 1] != 'Z') {
        return -1;
    }
    int64_t year = read_digits(text.at, year_digits);
    const uint8_t *rest = text.at + year_digits;
    int64_t month = read_digits(rest, 2);
    int64_t day = read_digits(rest + 2, 2);
    int64_t hour = read_digits(rest + 4, 2);
    int64_t minute = read_digits(rest + 6, 2);
    int64_t second = read_digits(rest + 8, 2);
    if (year < 0 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 ||
        minute < 0 || minute > 59 || second < 0 || second > 59) {
        return -1;
    }
    if (year_digits == 2) {
        year += year < 50 ? 2000 : 1900; /* RFC 5280's UTCTime window */
    }
    *seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    return 0;
}

/* The parts of a certificate's tbsCertificate the walks here read. */
struct tbs_fields {
    struct der_span validity;
    struct der_span subject;
    struct der_span rest; /* from subjectPublicKeyInfo on */
    int whole;            /* the certificate was all of the bytes, nothing after it */
};

/* Walks Certificate -> tbsCertificate past the subject. */
static int
walk_tbs(struct der_span bytes, struct tbs_fields *fields)
{
    struct der_span certificate;
    struct der_span tbs;
    if (der_expect(&bytes, TAG_SEQUENCE, &certificate) != 0 ||
        der_expect(&certificate, TAG_SEQUENCE, &tbs) != 0) {
        return -1;
    }
    fields->whole = bytes.left == 0;

    struct der_span skipped;
    uint8_t tag;
    if (tbs.left > 0 && tbs.at[0] == TAG_VERSION && der_next(&tbs, &tag, &skipped) != 0) {
        return -1;
    }
    if (der_expect(&tbs, TAG_INTEGER, &skipped) != 0 ||   /* serialNumber */
        der_expect(&tbs, TAG_SEQUENCE, &skipped) != 0 ||  /* signature algorithm */
        der_expect(&tbs, TAG_SEQUENCE, &skipped) != 0 ||  /* issuer */
        der_expect(&tbs, TAG_SEQUENCE, &fields->validity) != 0 ||
        der_expect(&tbs, TAG_SEQUENCE, &fields->subject) != 0) {
        return -1;
    }
    fields->rest = tbs;
    return 0;
}

/* The validity and the subject of one whole certificate. */
static int
read_identity(struct der_span whole, ota_cert_identity *identity)
{
    struct tbs_fields fields;
    if (walk_tbs(whole, &fields) != 0 || !fields.whole) {
        return -1;
    }
    struct der_span validity = fields.validity;
    if (read_time(&validity, &identity->not_before) != 0 ||
        read_time(&validity, &identity->not_after) != 0 || validity.left != 0) {
        return -1;
    }

    struct text_out out = {identity->subject, sizeof(identity->subject), 0, 0};
    identity->subject[0] = '\0';
    return write_name(&out, fields.subject);
}

/* The OIDs of the two public key kinds TLS 1.2 suites name: rsaEncryption, id-ecPublicKey. */
static const uint8_t oid_rsa[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01};
static const uint8_t oid_ec[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};

int
ota_cert_key_kind(const uint8_t *der, size_t length)
{
    struct der_span bytes = {der, length};
    struct tbs_fields fields;
    if (der == NULL || walk_tbs(bytes, &fields) != 0) {
        return OTA_KEY_OTHER;
    }
    struct der_span key_info;
    struct der_span algorithm;
    struct der_span oid;
    if (der_expect(&fields.rest, TAG_SEQUENCE, &key_info) != 0 ||
        der_expect(&key_info, TAG_SEQUENCE, &algorithm) != 0 ||
        der_expect(&algorithm, TAG_OID, &oid) != 0) {
        return OTA_KEY_OTHER;
    }
    if (oid.left == sizeof(oid_rsa) && memcmp(oid.at, oid_rsa, oid.left) == 0) {
        return OTA_KEY_RSA;
    }
    if (oid.left == sizeof(oid_ec) && memcmp(oid.at, oid_ec, oid.left) == 0) {
        return OTA_KEY_EC;
    }
    return OTA_KEY_OTHER;
}

int
ota_cert_identify(const uint8_t *der, size_t length, ota_cert_identity *identity)
{
    if (identity == NULL || (der == NULL && length > 0)) {
        return OTA_ERR_USAGE;
    }
    memset(identity, 0, sizeof(*identity));
    int status = ota_sha256(der, length, identity->sha256);
    if (status != OTA_OK) {
        return status;
    }

    struct der_span whole = {der, length};
    if (read_identity(whole, identity) != 0) {
        uint8_t digest[32];
        memcpy(digest, identity->sha256, sizeof(digest));
        memset(identity, 0, sizeof(*identity));
        memcpy(identity->sha256, digest, sizeof(digest));
        return OTA_ERR_PROTOCOL;
    }
    return OTA_OK;
}
