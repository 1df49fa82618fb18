/*
 * tls_backend.h - the one interface each TLS backend implements (tls_openssl.c,
 * tls_mbedtls.c). Exactly one is compiled in, chosen by the package trait.
 *
 * Everything here is non-blocking: an operation that cannot progress returns
 * OTA_TLS_WANT_READ or OTA_TLS_WANT_WRITE and the caller (conn.c) waits on the socket with
 * its deadlines, then calls again. Failures return a negative ota_status and describe
 * themselves in `detail`.
 */

#ifndef OTA_TLS_BACKEND_H
#define OTA_TLS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "ota_core.h"
#include "tls_policy.h"

enum {
    OTA_TLS_DONE = 0,
    OTA_TLS_WANT_READ = 1,
    OTA_TLS_WANT_WRITE = 2,
};

/* The certificate and key, loaded and checked once; shared read-only by sessions. */
struct ota_tls_credentials;

/* What a failed load was about, so that the caller can name the setting. */
enum ota_tls_item {
    OTA_TLS_ITEM_OTHER = 0,
    OTA_TLS_ITEM_CERTIFICATE = 1,
    OTA_TLS_ITEM_KEY = 2,
    OTA_TLS_ITEM_PAIR = 3,
};

/*
 * On failure `*item` (never NULL) says which input was at fault. `policy` has been checked
 * against the backend already (ota_tls_backend_max_version); the backend offers exactly its
 * suites of the versions it allows, in its order, and copies what it keeps.
 */
int ota_tls_credentials_load(const char *certificate_path, const char *key_path,
                             const struct ota_tls_policy *policy,
                             struct ota_tls_credentials **credentials, int *item, char *detail,
                             size_t detail_size);

/* The server certificate in DER, owned by the credentials. */
const uint8_t *ota_tls_credentials_der(const struct ota_tls_credentials *credentials,
                                       size_t *length);

void ota_tls_credentials_free(struct ota_tls_credentials *credentials);

/* One server-side TLS session over a non-blocking socket it does not own. */
struct ota_tls_session;

struct ota_tls_session *ota_tls_session_new(const struct ota_tls_credentials *credentials,
                                            int fd, char *detail, size_t detail_size);

int ota_tls_session_handshake(struct ota_tls_session *session, char *detail,
                              size_t detail_size);

/*
 * 1 while the client's first flight (its ClientHello) has not been read in full, 0 once the
 * server has answered it. A client that stalls before that owes bytes it sends at once; one
 * that stalls after is computing its side of the key exchange.
 */
int ota_tls_session_awaits_hello(const struct ota_tls_session *session);

/* OTA_TLS_DONE with `*received` > 0, a WANT, OTA_ERR_CLOSED at close_notify or EOF, or an error. */
int ota_tls_session_read(struct ota_tls_session *session, void *buffer, size_t capacity,
                         size_t *received, char *detail, size_t detail_size);

/*
 * Writes up to `length` bytes; `*written` may be less (one record at a time is fine). After a
 * WANT the caller repeats the call with the same buffer and length.
 */
int ota_tls_session_write(struct ota_tls_session *session, const void *buffer, size_t length,
                          size_t *written, char *detail, size_t detail_size);

/*
 * 1 when the kernel encrypts what this session sends (kernel TLS transmit is on for its
 * socket), so that ota_tls_session_sendfile may be used; 0 otherwise. Call it after the
 * handshake and before the first write of application data: a backend may hand its keys to
 * the kernel at this point. `note` says which way it went and why.
 */
int ota_tls_session_kernel_send(struct ota_tls_session *session, char *note, size_t note_size);

/*
 * Sends up to `length` bytes of `file_fd` from `offset` through the kernel's TLS, with no
 * user-space copy. OTA_TLS_DONE with `*sent` (0 at the end of the file), a WANT, or an error.
 * Only when ota_tls_session_kernel_send says so.
 */
int ota_tls_session_sendfile(struct ota_tls_session *session, int file_fd, uint64_t offset,
                             size_t length, size_t *sent, char *detail, size_t detail_size);

/*
 * Called once before the first write of a transfer that the kernel does not encrypt (the
 * pread path). A backend may take over record encryption here: the mbedTLS backend seals
 * TLS 1.2 AES-GCM records itself (tls_mbedtls_seal.c), after which mbedTLS never writes on
 * the socket again. `engine` names what encrypts the records and, when that stays the
 * library, why; the OpenSSL backend changes nothing.
 */
void ota_tls_session_user_send(struct ota_tls_session *session, char *engine,
                               size_t engine_size);

/* Sends close_notify (does not wait for the peer's). */
int ota_tls_session_close_notify(struct ota_tls_session *session, char *detail,
                                 size_t detail_size);

/* Largest plaintext one record may carry on this session (16384, or the negotiated limit). */
size_t ota_tls_session_max_record(const struct ota_tls_session *session);

const char *ota_tls_session_protocol(const struct ota_tls_session *session);
const char *ota_tls_session_cipher(const struct ota_tls_session *session);

/*
 * The certificate the client presented in the handshake, DER, owned by the session (valid
 * until it is freed). `*der` NULL and `*length` 0 when it presented none, before the handshake
 * has finished, and always on a backend that does not ask for one. OTA_OK or an error.
 */
int ota_tls_session_peer_certificate(struct ota_tls_session *session, const uint8_t **der,
                                     size_t *length);

/* 1 when the backend asks clients for a certificate and checks their CertificateVerify. */
int ota_tls_backend_supports_proof(void);

/* Frees the session's memory. Sends nothing and leaves the socket open. */
void ota_tls_session_free(struct ota_tls_session *session);

/* Hashing and certificate inspection by the backend's library. */
struct ota_tls_sha256;
struct ota_tls_sha256 *ota_tls_sha256_new(void);
int ota_tls_sha256_update(struct ota_tls_sha256 *context, const void *data, size_t length);
int ota_tls_sha256_final(struct ota_tls_sha256 *context, uint8_t digest[32]);
void ota_tls_sha256_free(struct ota_tls_sha256 *context);

int ota_tls_cert_inspect(const uint8_t *der, size_t length, ota_cert_info *info, char *detail,
                         size_t detail_size);

const char *ota_tls_backend_name(void);

/* AES-GCM with a 12-byte IV by the backend's library, for checking record_seal.c in tests:
 * OTA_OK, OTA_ERR_USAGE for a key that is not 16 or 32 bytes, or OTA_ERR_INTERNAL. */
int ota_tls_aes_gcm_reference(const unsigned char *key, size_t key_length,
                              const unsigned char iv[12], const unsigned char *aad,
                              size_t aad_length, const unsigned char *input, size_t length,
                              unsigned char *output, unsigned char tag[16]);

/* Frees the library's per-thread state of the calling thread (see ota_thread_done). */
void ota_tls_thread_done(void);

/* The highest protocol version the backend speaks: OTA_TLS_POLICY_VERSION_1_2 or _1_3. */
uint16_t ota_tls_backend_max_version(void);
const char *ota_tls_backend_version(void);

#endif /* OTA_TLS_BACKEND_H */
