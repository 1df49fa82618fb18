/*
 * tls_mbedtls_seal.h - an mbedTLS session's outgoing records sealed by record_seal.c instead
 * of mbedTLS, on the pread path. mbedTLS backend only.
 */

#ifndef OTA_TLS_MBEDTLS_SEAL_H
#define OTA_TLS_MBEDTLS_SEAL_H

#ifdef OTA_BACKEND_MBEDTLS

#include <stddef.h>

#include <mbedtls/ssl.h>

#include "record_seal.h"
#include "tls_mbedtls_kernel.h"

/* The transmit side once the sealer has it: the keys, and the record being sent. */
struct ota_mbedtls_seal {
    struct ota_record_sealer sealer;
    unsigned char *record;    /* mbedTLS's own output buffer, unused by it after the hand-off */
    size_t capacity;
    size_t record_length;     /* the sealed record in `record`, 0 when none is pending */
    size_t record_sent;       /* of which the socket took this much */
    size_t record_plaintext;  /* its plaintext bytes, reported once the record is out */
    int alert_sealed;         /* close_notify is sealed (and maybe sent): never seal another */
    int active;
};

/*
 * Takes over the transmit side when the session qualifies: TLS 1.2 AES-GCM, keys exported,
 * nothing queued in mbedTLS, a CPU with AES-NI and PCLMULQDQ. 1 then: mbedTLS must never write
 * on the socket again. 0 otherwise, and mbedTLS keeps writing. `engine` names who encrypts
 * the records and, when that stays mbedTLS, why. `keys` are wiped either way.
 */
int ota_mbedtls_seal_handoff(mbedtls_ssl_context *ssl, struct ota_mbedtls_tx_keys *keys,
                             struct ota_mbedtls_seal *seal, char *engine, size_t engine_size);

/*
 * ota_tls_session_write through the sealer: one record of at most `max_record` bytes per call,
 * sent with send(2). A partial send keeps the rest and returns OTA_TLS_WANT_WRITE; the repeated
 * call (same arguments) sends the rest and reports the record's plaintext length.
 */
int ota_mbedtls_seal_write(struct ota_mbedtls_seal *seal, int fd, const void *buffer,
                           size_t length, size_t max_record, size_t *written, char *detail,
                           size_t detail_size);

/* close_notify as a sealed alert record: OTA_TLS_DONE, OTA_TLS_WANT_WRITE or a status. */
int ota_mbedtls_seal_close_notify(struct ota_mbedtls_seal *seal, int fd, char *detail,
                                  size_t detail_size);

/* Wipes the keys and forgets the record; for the session's end. */
void ota_mbedtls_seal_wipe(struct ota_mbedtls_seal *seal);

#endif /* OTA_BACKEND_MBEDTLS */

#endif /* OTA_TLS_MBEDTLS_SEAL_H */
