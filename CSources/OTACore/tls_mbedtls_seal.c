/*
 * tls_mbedtls_seal.c - the mbedTLS session's outgoing records sealed by record_seal.c.
 *
 * mbedTLS 2.28's AES-GCM runs one block per call and held the pread path to about 5.5 ms of
 * CPU per MiB. After the handshake the agent only sends (the image, then close_notify), so the
 * transmit side can be taken over exactly as for kernel TLS (tls_mbedtls_kernel.c): the server
 * write key and salt captured by the export callback, and the next record sequence number read
 * from the context. From then on mbedTLS never writes on the socket, and the records are
 * sealed into mbedTLS's own output buffer, which it no longer uses, so a session needs no
 * second 16 KiB buffer. Only TLS 1.2 AES-GCM-128/256 qualifies; ChaCha20-Poly1305 and any
 * other suite stay with mbedtls_ssl_write, and the engine note says why.
 */

#ifdef OTA_BACKEND_MBEDTLS

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <mbedtls/cipher.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/ssl_internal.h>

#include "ota_internal.h"
#include "tls_backend.h"
#include "tls_mbedtls_seal.h"

/* TLS content types (RFC 5246 6.2.1). */
#define OTA_SEAL_APPLICATION_DATA 23
#define OTA_SEAL_ALERT 21

/* The size of mbedTLS's output buffer, which the sealed records reuse. */
static size_t
ota_mbedtls_seal_capacity(const mbedtls_ssl_context *ssl)
{
    if (ssl->out_buf == NULL) {
        return 0;
    }
#if defined(MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH)
    return ssl->out_buf_len;
#else
    return MBEDTLS_SSL_OUT_BUFFER_LEN;
#endif
}

/* Why the session's records must stay with mbedTLS, or NULL when the sealer can take them. */
static const char *
ota_mbedtls_seal_refusal(const mbedtls_ssl_context *ssl, const struct ota_mbedtls_tx_keys *keys,
                         char *text, size_t text_size)
{
    int id = ssl->session != NULL ? ssl->session->ciphersuite : 0;
    const mbedtls_ssl_ciphersuite_t *suite = mbedtls_ssl_ciphersuite_from_id(id);
    if (suite == NULL || (suite->cipher != MBEDTLS_CIPHER_AES_128_GCM &&
                          suite->cipher != MBEDTLS_CIPHER_AES_256_GCM)) {
        ota_detail_set(text, text_size, "%s is not AES-GCM",
                       suite != NULL ? suite->name : "the suite");
        return text;
    }
    const char *cpu = ota_record_seal_unavailable();
    if (cpu != NULL) {
        return cpu;
    }
    if (!keys->present || keys->iv_length != 4 ||
        keys->key_length != (suite->cipher == MBEDTLS_CIPHER_AES_256_GCM ? 32u : 16u)) {
        return "no transmit keys were exported for this session";
    }
    if (ssl->out_left != 0) {
        return "mbedTLS still had output queued";
    }
    int payload = mbedtls_ssl_get_max_out_record_payload(ssl);
    if (payload <= 0 ||
        ota_mbedtls_seal_capacity(ssl) < (size_t)payload + OTA_RECORD_SEAL_OVERHEAD) {
        return "mbedTLS's output buffer cannot hold a sealed record";
    }
    return NULL;
}

int
ota_mbedtls_seal_handoff(mbedtls_ssl_context *ssl, struct ota_mbedtls_tx_keys *keys,
                         struct ota_mbedtls_seal *seal, char *engine, size_t engine_size)
{
    char text[96];
    const char *reason = ota_mbedtls_seal_refusal(ssl, keys, text, sizeof(text));
    int status = OTA_ERR_USAGE;
    if (reason == NULL) {
        /* cur_out_ctr is the number of the next record mbedTLS would have sent. */
        status = ota_record_sealer_init(&seal->sealer, keys->key, keys->key_length, keys->iv,
                                        ssl->cur_out_ctr);
    }
    /* Either way no one needs these copies any more: the sealer has its own schedule. */
    mbedtls_platform_zeroize(keys, sizeof(*keys));

    if (status != OTA_OK) {
        ota_record_sealer_wipe(&seal->sealer);
        ota_detail_set(engine, engine_size, "user-space (mbedTLS): %s",
                       reason != NULL ? reason : "the sealer refused the keys");
        return 0;
    }
    seal->record = ssl->out_buf;
    seal->capacity = ota_mbedtls_seal_capacity(ssl);
    seal->active = 1;
    ota_detail_set(engine, engine_size, "user-space AES-GCM (AES-NI)");
    return 1;
}

/* Sends what is left of the pending record. OTA_TLS_DONE once all of it is out. */
static int
ota_mbedtls_seal_flush(struct ota_mbedtls_seal *seal, int fd, char *detail, size_t detail_size)
{
    while (seal->record_sent < seal->record_length) {
        /* MSG_NOSIGNAL: a device that vanished must not raise SIGPIPE in the agent. */
        ssize_t sent = send(fd, seal->record + seal->record_sent,
                            seal->record_length - seal->record_sent, MSG_NOSIGNAL);
        if (sent > 0) {
            seal->record_sent += (size_t)sent;
            continue;
        }
        if (sent < 0 && errno == EINTR) {
            continue;
        }
        if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return OTA_TLS_WANT_WRITE;
        }
        int closed = sent < 0 && (errno == EPIPE || errno == ECONNRESET);
        ota_detail_set(detail, detail_size, "send: %s",
                       closed ? "connection reset by peer"
                              : sent < 0 ? strerror(errno) : "no byte taken");
        return closed ? OTA_ERR_CLOSED : OTA_ERR_IO;
    }
    return OTA_TLS_DONE;
}

/* Seals one record of `type` into the buffer; it is pending until flushed. */
static int
ota_mbedtls_seal_record(struct ota_mbedtls_seal *seal, unsigned char type, const void *plaintext,
                        size_t length, char *detail, size_t detail_size)
{
    size_t record_length = 0;
    int status = ota_record_seal(&seal->sealer, type, plaintext, length, seal->record,
                                 seal->capacity, &record_length);
    if (status != OTA_OK) {
        ota_detail_set(detail, detail_size, "record sealer: %s",
                       status == OTA_ERR_INTERNAL ? "record sequence numbers used up"
                                                  : "record does not fit");
        return status;
    }
    seal->record_length = record_length;
    seal->record_sent = 0;
    seal->record_plaintext = length;
    return OTA_OK;
}

int
ota_mbedtls_seal_write(struct ota_mbedtls_seal *seal, int fd, const void *buffer,
                       size_t length, size_t max_record, size_t *written, char *detail,
                       size_t detail_size)
{
    *written = 0;
    if (seal->alert_sealed) {
        ota_detail_set(detail, detail_size, "write: close_notify was already sealed");
        return OTA_ERR_USAGE;
    }

    /* A pending record is the one built for this same call before its WANT_WRITE. */
    if (seal->record_length == 0) {
        size_t room = seal->capacity - OTA_RECORD_SEAL_OVERHEAD;
        size_t chunk = length < max_record ? length : max_record;
        chunk = chunk < room ? chunk : room;
        int status = ota_mbedtls_seal_record(seal, OTA_SEAL_APPLICATION_DATA, buffer, chunk,
                                             detail, detail_size);
        if (status != OTA_OK) {
            return status;
        }
    }

    int result = ota_mbedtls_seal_flush(seal, fd, detail, detail_size);
    if (result != OTA_TLS_DONE) {
        return result;
    }
    *written = seal->record_plaintext;
    seal->record_length = 0;
    return OTA_TLS_DONE;
}

int
ota_mbedtls_seal_close_notify(struct ota_mbedtls_seal *seal, int fd, char *detail,
                              size_t detail_size)
{
    if (!seal->alert_sealed) {
        /* A data record still pending goes first, so the stream stays whole. */
        int result = ota_mbedtls_seal_flush(seal, fd, detail, detail_size);
        if (result != OTA_TLS_DONE) {
            return result;
        }
        /* An alert record: level warning (1), description close_notify (0). */
        static const unsigned char alert[2] = {1, 0};
        int status = ota_mbedtls_seal_record(seal, OTA_SEAL_ALERT, alert, sizeof(alert), detail,
                                             detail_size);
        if (status != OTA_OK) {
            return status;
        }
        seal->alert_sealed = 1;
    }

    /* After a WANT_WRITE the repeated call sends the rest of the alert already sealed. */
    int result = ota_mbedtls_seal_flush(seal, fd, detail, detail_size);
    if (result == OTA_TLS_DONE) {
        seal->record_length = 0;
        seal->record_sent = 0;
    }
    return result;
}

void
ota_mbedtls_seal_wipe(struct ota_mbedtls_seal *seal)
{
    ota_record_sealer_wipe(&seal->sealer);
    seal->record = NULL;
    seal->capacity = 0;
    seal->record_length = 0;
    seal->record_sent = 0;
}

#endif /* OTA_BACKEND_MBEDTLS */
