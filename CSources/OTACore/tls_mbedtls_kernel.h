/*
 * tls_mbedtls_kernel.h - handing an mbedTLS session's transmit side to the kernel (Linux
 * kernel TLS), so that the image can go out with sendfile(2). mbedTLS backend only.
 */

#ifndef OTA_TLS_MBEDTLS_KERNEL_H
#define OTA_TLS_MBEDTLS_KERNEL_H

#ifdef OTA_BACKEND_MBEDTLS

#include <stddef.h>

#include <mbedtls/ssl.h>

/* The server's write key and IV for one session, captured during its handshake. */
struct ota_mbedtls_tx_keys {
    unsigned char key[32];
    unsigned char iv[12];
    size_t key_length;
    size_t iv_length;
    int present;
};

/*
 * The export callback to register on the configuration. mbedTLS 2.28 has it per
 * configuration only, and calls it synchronously inside mbedtls_ssl_handshake(); so the
 * session being handshaken on this thread names its key store with capture_begin/end.
 */
int ota_mbedtls_export_keys(void *unused, const unsigned char *master, const unsigned char *block,
                            size_t mac_length, size_t key_length, size_t iv_length,
                            const unsigned char client_random[32],
                            const unsigned char server_random[32], mbedtls_tls_prf_types prf);
void ota_mbedtls_capture_begin(struct ota_mbedtls_tx_keys *keys);
void ota_mbedtls_capture_end(void);

/*
 * Installs the transmit keys and the current record sequence number into the socket's kernel
 * TLS. 1 on success: mbedTLS must never write on that socket again. 0 when the session does
 * not qualify or the kernel refuses; `note` says why. The keys are wiped once installed; a
 * refusal leaves them for the user-space sealer (ota_mbedtls_seal_handoff), which wipes them.
 */
int ota_mbedtls_kernel_handoff(mbedtls_ssl_context *ssl, int fd, struct ota_mbedtls_tx_keys *keys,
                               char *note, size_t note_size);

/* Sends close_notify through kernel TLS: OTA_TLS_DONE, OTA_TLS_WANT_WRITE or a status. */
int ota_mbedtls_kernel_close_notify(int fd, char *detail, size_t detail_size);

#endif /* OTA_BACKEND_MBEDTLS */

#endif /* OTA_TLS_MBEDTLS_KERNEL_H */
