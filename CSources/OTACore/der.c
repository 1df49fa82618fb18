/*
 * der.c - framing the device's attestation certificate, and its PEM form.
 *
 * The device sends raw DER with no length prefix, so the outer ASN.1 header is the only way
 * to know where the certificate ends. Both functions are pure: no I/O, no allocation, which
 * keeps them easy to test and to fuzz.
 */

#include <string.h>

#include "ota_internal.h"

#define OTA_DER_TAG_SEQUENCE 0x30

ota_der_state
ota_der_frame(const uint8_t *bytes, size_t length, size_t max_total, size_t *total,
              const char **reason)
{
    const char *ignored_reason;
    size_t ignored_total;
    reason = reason != NULL ? reason : &ignored_reason;
    total = total != NULL ? total : &ignored_total;
    *reason = NULL;
    if (max_total > OTA_DER_MAX_LENGTH) {
        max_total = OTA_DER_MAX_LENGTH;
    }
    if (bytes == NULL && length > 0) {
        *reason = "no buffer";
        return OTA_DER_INVALID;
    }

    if (length < 2) {
        if (length == 1 && bytes[0] != OTA_DER_TAG_SEQUENCE) {
            *reason = "not a DER SEQUENCE (first byte is not 0x30)";
            return OTA_DER_INVALID;
        }
        *total = 2;
        return OTA_DER_NEED_MORE;
    }
    if (bytes[0] != OTA_DER_TAG_SEQUENCE) {
        *reason = "not a DER SEQUENCE (first byte is not 0x30)";
        return OTA_DER_INVALID;
    }

    size_t header_length;
    size_t content_length;
    uint8_t first = bytes[1];
    if (first < 0x80) {
        header_length = 2;
        content_length = first;
    } else if (first == 0x80) {
        *reason = "indefinite length is not DER";
        return OTA_DER_INVALID;
    } else {
        size_t length_bytes = first & 0x7f;
        if (length_bytes > 2) {
            *reason = "length field longer than 2 bytes: too large, or not minimally encoded";
            return OTA_DER_INVALID;
        }
        header_length = 2 + length_bytes;
        if (length < header_length) {
            *total = header_length;
            return OTA_DER_NEED_MORE;
        }

        content_length = 0;
        for (size_t index = 0; index < length_bytes; index++) {
            content_length = (content_length << 8) | bytes[2 + index];
        }
        /* DER demands the shortest form: long form only from 128, no leading zero byte. */
        if (content_length < 0x80 || (length_bytes == 2 && content_length < 0x100)) {
            *reason = "length is not minimally encoded";
            return OTA_DER_INVALID;
        }
    }

    if (header_length + content_length > max_total) {
        *reason = "certificate longer than the limit";
        return OTA_DER_INVALID;
    }

    *total = header_length + content_length;
    return length >= *total ? OTA_DER_COMPLETE : OTA_DER_NEED_MORE;
}

static const char ota_base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static const char ota_pem_begin[] = "-----BEGIN CERTIFICATE-----\n";
static const char ota_pem_end[] = "-----END CERTIFICATE-----\n";

#define OTA_PEM_LINE 64
#define OTA_PEM_MAX_INPUT ((size_t)1 << 30)

size_t
ota_pem_length(size_t der_length)
{
    /* Far beyond any certificate; refusing it keeps the arithmetic below from wrapping. */
    if (der_length > OTA_PEM_MAX_INPUT) {
        return 0;
    }
    size_t encoded = (der_length + 2) / 3 * 4;
    size_t lines = (encoded + OTA_PEM_LINE - 1) / OTA_PEM_LINE;
    return (sizeof(ota_pem_begin) - 1) + encoded + lines + (sizeof(ota_pem_end) - 1) + 1;
}

/* Encodes up to three bytes as four base64 characters, padding with '='. */
static void
ota_base64_quantum(const uint8_t *in, size_t count, char out[4])
{
    uint32_t group = (uint32_t)in[0] << 16;
    group |= count > 1 ? (uint32_t)in[1] << 8 : 0;
    group |= count > 2 ? (uint32_t)in[2] : 0;

    out[0] = ota_base64_alphabet[(group >> 18) & 0x3f];
    out[1] = ota_base64_alphabet[(group >> 12) & 0x3f];
    out[2] = count > 1 ? ota_base64_alphabet[(group >> 6) & 0x3f] : '=';
    out[3] = count > 2 ? ota_base64_alphabet[group & 0x3f] : '=';
}

int
ota_der_to_pem(const uint8_t *der, size_t der_length, char *pem, size_t capacity,
               size_t *pem_length)
{
    if ((der == NULL && der_length > 0) || pem == NULL) {
        return OTA_ERR_USAGE;
    }
    if (der_length > OTA_PEM_MAX_INPUT || capacity < ota_pem_length(der_length)) {
        return OTA_ERR_USAGE;
    }

    char *cursor = pem;
    memcpy(cursor, ota_pem_begin, sizeof(ota_pem_begin) - 1);
    cursor += sizeof(ota_pem_begin) - 1;

    size_t column = 0;
    for (size_t offset = 0; offset < der_length; offset += 3) {
        size_t count = der_length - offset < 3 ? der_length - offset : 3;
        ota_base64_quantum(der + offset, count, cursor);
        cursor += 4;
        column += 4;
        if (column == OTA_PEM_LINE || offset + count == der_length) {
            *cursor++ = '\n';
            column = 0;
        }
    }

    memcpy(cursor, ota_pem_end, sizeof(ota_pem_end) - 1);
    cursor += sizeof(ota_pem_end) - 1;
    *cursor = '\0';
    if (pem_length != NULL) {
        *pem_length = (size_t)(cursor - pem);
    }
    return OTA_OK;
}
