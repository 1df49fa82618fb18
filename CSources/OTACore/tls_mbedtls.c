/*
 * tls_mbedtls.c - the TLS backend on mbedTLS 2.28, the stack the field devices run themselves.
 *
 * One mbedtls_ssl_config per credentials, shared read-only by every session; one
 * mbedtls_ssl_context per session over a non-blocking socket the session does not own. The
 * sessions use their own bio callbacks rather than mbedtls_net_send/recv so that every send
 * carries MSG_NOSIGNAL and so that a failing socket call keeps its errno for the detail.
 *
 * Sharing across threads (sessions run concurrently, each on its own thread):
 * - The random generator: one entropy source and one CTR_DRBG per credentials, used through
 *   mbedtls_ctr_drbg_random. ctr_drbg.h promises that with MBEDTLS_THREADING_C this function
 *   may be called from several threads at once once the DRBG is seeded: it holds the
 *   context's mutex for the whole call, automatic reseeding included (the entropy context has
 *   its own mutex too). Nothing here reseeds or updates the DRBG by hand after seeding.
 * - The private key: an RSA key serialises its blinding state under its own mutex. An EC key
 *   is only read: mbedTLS 2.28 signs with a copy of it (mbedtls_ecdsa_from_keypair), so the
 *   table of generator multiples that ECP caches in a group lands in the copy, not the key.
 * - The certificate chain and the ssl_config are only read once built.
 */

#ifdef OTA_BACKEND_MBEDTLS

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ecp.h>
#include <mbedtls/error.h>
#include <mbedtls/gcm.h>
#include <mbedtls/md.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "ota_internal.h"
#include "tls_backend.h"
#include "tls_mbedtls_kernel.h"
#include "tls_mbedtls_seal.h"

#if MBEDTLS_VERSION_NUMBER < 0x021C0000 || MBEDTLS_VERSION_NUMBER >= 0x03000000
#error "tls_mbedtls.c is written against the mbedTLS 2.28 API"
#endif
#if defined(MBEDTLS_ZLIB_SUPPORT)
#error "TLS compression must stay off (CRIME): build against an mbedTLS without ZLIB support"
#endif
#if !defined(MBEDTLS_THREADING_C)
#error "tls_mbedtls.c shares one CTR_DRBG between session threads: needs MBEDTLS_THREADING_C"
#endif

/* The largest TLS plaintext record, used while mbedTLS cannot say better. */
#define OTA_MBEDTLS_RECORD_MAX 16384

/* Room for one mbedtls_strerror text, high- and low-level parts together. */
#define OTA_MBEDTLS_ERROR_TEXT 160

/* The name a server certificate must carry for the devices' hostname check. */
static const char ota_mbedtls_agent_name[] = "ota-agent";

/* Mixed into the DRBG seed so that this generator's stream differs from any other's. */
static const char ota_mbedtls_personalization[] = "ota-agent tls_mbedtls";

/*
 * Hashes for the server's ServerKeyExchange signature, strongest first. The default preset
 * allows SHA-224 too; SHA-1 is already out (MBEDTLS_TLS_DEFAULT_ALLOW_SHA1_IN_KEY_EXCHANGE
 * is off in Debian's build), and ESP-IDF devices offer SHA-256. Kept by pointer: static.
 */
static const int ota_mbedtls_signature_hashes[] = {
    MBEDTLS_MD_SHA512,
    MBEDTLS_MD_SHA384,
    MBEDTLS_MD_SHA256,
    MBEDTLS_MD_NONE,
};

struct ota_tls_credentials {
    mbedtls_x509_crt chain; /* the leaf first, then any intermediates from the same file */
    mbedtls_pk_context key;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context random;
    mbedtls_ssl_config config;
    /* The policy's lists in mbedTLS's form (tls_policy.h); the config keeps pointers to them. */
    int suites[OTA_TLS_POLICY_SUITE_COUNT + 1];
    mbedtls_ecp_group_id curves[OTA_TLS_POLICY_GROUP_COUNT + 1];
};

struct ota_tls_session {
    mbedtls_ssl_context ssl;
    int fd;
    int handshake_done;
    /* Kernel TLS: keys captured in the handshake, whether the hand-off was tried and done. */
    struct ota_mbedtls_tx_keys tx_keys;
    int kernel_tried;
    int kernel_tx;
    char kernel_note[128];
    /* User-space AES-GCM: the sealer owns the transmit side once `seal.active` (the same
     * hand-off as to the kernel, on the pread path). */
    struct ota_mbedtls_seal seal;
    int seal_tried;
    char seal_engine[128];
    /* The socket call and errno behind the last MBEDTLS_ERR_NET_SEND/RECV_FAILED. */
    const char *failed_call;
    int failed_errno;
    /* recv(2) returned 0: the device really ended its stream. */
    int peer_eof;
};

struct ota_tls_sha256 {
    mbedtls_sha256_context context;
};

/* ---- error texts --------------------------------------------------------------------------- */

/* mbedTLS's description of an error code; fixed strings, never key material. */
static void
ota_mbedtls_error_text(int code, char *text, size_t text_size)
{
    mbedtls_strerror(code, text, text_size);
    if (text[0] == '\0') {
        snprintf(text, text_size, "mbedTLS error -0x%04X", (unsigned int)-code);
    }
}

/* errno's description; strerror itself is not thread-safe. */
static const char *
ota_mbedtls_errno_text(int error, char *text, size_t text_size)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(error, text, text_size);
#else
    if (strerror_r(error, text, text_size) != 0) {
        snprintf(text, text_size, "errno %d", error);
    }
    return text;
#endif
}

/* ---- credentials --------------------------------------------------------------------------- */

static int
ota_mbedtls_load_certificate(struct ota_tls_credentials *credentials, const char *path,
                             char *detail, size_t detail_size)
{
    char cause[OTA_MBEDTLS_ERROR_TEXT];
    int result = mbedtls_x509_crt_parse_file(&credentials->chain, path);
    if (result < 0) {
        ota_mbedtls_error_text(result, cause, sizeof(cause));
        ota_detail_set(detail, detail_size, "cannot parse certificate file %s: %s", path,
                       cause);
        return OTA_ERR_CONFIG;
    }
    /* A positive result counts certificates that failed while others parsed: still broken. */
    if (result > 0) {
        ota_detail_set(detail, detail_size,
                       "cannot parse certificate file %s: %d of its certificates are invalid",
                       path, result);
        return OTA_ERR_CONFIG;
    }
    return OTA_OK;
}

static int
ota_mbedtls_load_key(struct ota_tls_credentials *credentials, const char *path, char *detail,
                     size_t detail_size)
{
    char cause[OTA_MBEDTLS_ERROR_TEXT];
    int result = mbedtls_pk_parse_keyfile(&credentials->key, path, NULL);
    if (result == MBEDTLS_ERR_PK_PASSWORD_REQUIRED) {
        ota_detail_set(detail, detail_size,
                       "cannot parse key file %s: the key is encrypted; "
                       "an unencrypted key is required", path);
        return OTA_ERR_CONFIG;
    }
    if (result != 0) {
        ota_mbedtls_error_text(result, cause, sizeof(cause));
        ota_detail_set(detail, detail_size, "cannot parse key file %s: %s", path, cause);
        return OTA_ERR_CONFIG;
    }

    /* TLS 1.2 server signatures come from RSA or ECDSA keys; nothing else is usable. */
    if (!mbedtls_pk_can_do(&credentials->key, MBEDTLS_PK_RSA) &&
        !mbedtls_pk_can_do(&credentials->key, MBEDTLS_PK_ECDSA)) {
        ota_detail_set(detail, detail_size, "key file %s: unsupported key type %s", path,
                       mbedtls_pk_get_name(&credentials->key));
        return OTA_ERR_CONFIG;
    }
    return OTA_OK;
}

/* The leaf certificate's public key must be the public half of the private key. */
static int
ota_mbedtls_check_pair(struct ota_tls_credentials *credentials, const char *certificate_path,
                       const char *key_path, char *detail, size_t detail_size)
{
    char cause[OTA_MBEDTLS_ERROR_TEXT];
    int result = mbedtls_pk_check_pair(&credentials->chain.pk, &credentials->key);
    if (result != 0) {
        ota_mbedtls_error_text(result, cause, sizeof(cause));
        ota_detail_set(detail, detail_size,
                       "certificate and key do not match: certificate %s, key %s (%s)",
                       certificate_path, key_path, cause);
        return OTA_ERR_CONFIG;
    }
    return OTA_OK;
}

static int
ota_mbedtls_seed_random(struct ota_tls_credentials *credentials, char *detail,
                        size_t detail_size)
{
    char cause[OTA_MBEDTLS_ERROR_TEXT];
    int result = mbedtls_ctr_drbg_seed(&credentials->random, mbedtls_entropy_func,
                                       &credentials->entropy,
                                       (const unsigned char *)ota_mbedtls_personalization,
                                       sizeof(ota_mbedtls_personalization) - 1);
    if (result != 0) {
        ota_mbedtls_error_text(result, cause, sizeof(cause));
        ota_detail_set(detail, detail_size, "mbedtls_ctr_drbg_seed: %s", cause);
        return OTA_ERR_INTERNAL;
    }
    return OTA_OK;
}

/* The policy's TLS 1.2 suites and groups, 0- and NONE-terminated, into the credentials. */
static void
ota_mbedtls_policy_lists(struct ota_tls_credentials *credentials,
                         const struct ota_tls_policy *policy)
{
    size_t count = 0;
    for (size_t index = 0; index < policy->count; index++) {
        if (policy->suites[index]->version == OTA_TLS_POLICY_VERSION_1_2) {
            credentials->suites[count++] = policy->suites[index]->id;
        }
    }
    credentials->suites[count] = 0;

    count = 0;
    for (size_t index = 0; index < OTA_TLS_POLICY_GROUP_COUNT; index++) {
        const mbedtls_ecp_curve_info *curve =
            mbedtls_ecp_curve_info_from_tls_id(ota_tls_policy_groups[index].id);
        if (curve != NULL) {
            credentials->curves[count++] = curve->grp_id;
        }
    }
    credentials->curves[count] = MBEDTLS_ECP_DP_NONE;
}

static int
ota_mbedtls_configure(struct ota_tls_credentials *credentials,
                      const struct ota_tls_policy *policy, char *detail, size_t detail_size)
{
    char cause[OTA_MBEDTLS_ERROR_TEXT];
    mbedtls_ssl_config *config = &credentials->config;
    int result = mbedtls_ssl_config_defaults(config, MBEDTLS_SSL_IS_SERVER,
                                             MBEDTLS_SSL_TRANSPORT_STREAM,
                                             MBEDTLS_SSL_PRESET_DEFAULT);
    if (result != 0) {
        ota_mbedtls_error_text(result, cause, sizeof(cause));
        ota_detail_set(detail, detail_size, "mbedtls_ssl_config_defaults: %s", cause);
        return OTA_ERR_INTERNAL;
    }

    /* TLS 1.2 and nothing else: it is what the field devices' mbedTLS speaks. */
    mbedtls_ssl_conf_min_version(config, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(config, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    ota_mbedtls_policy_lists(credentials, policy);
    mbedtls_ssl_conf_ciphersuites(config, credentials->suites);
    mbedtls_ssl_conf_curves(config, credentials->curves);
    mbedtls_ssl_conf_sig_hashes(config, ota_mbedtls_signature_hashes);
    mbedtls_ssl_conf_rng(config, mbedtls_ctr_drbg_random, &credentials->random);

    /*
     * Devices prove who they are with the attestation certificate they send, not TLS: this
     * backend never asks for a client certificate, so no device proves possession of its key
     * here. mbedTLS 2.28 as Debian builds it cannot accept a DICE certificate as a client
     * certificate: its X.509 parser fails the handshake on the certificate's unknown critical
     * extension (1.3.6.1.4.1.11129.2.1.24) before any verify callback runs. The TLS layer
     * parses peer certificates without the extension callback that ota_tls_cert_inspect
     * uses, and MBEDTLS_X509_ALLOW_UNSUPPORTED_CRITICAL_EXTENSION, the build option that
     * would let them through, is off in Debian's build. A library built with it would lift
     * this; until then proof of possession needs the OpenSSL backend.
     */
    mbedtls_ssl_conf_authmode(config, MBEDTLS_SSL_VERIFY_NONE);

    /* The transmit keys, for the hand-off to kernel TLS (tls_mbedtls_kernel.c). */
    mbedtls_ssl_conf_export_keys_ext_cb(config, ota_mbedtls_export_keys, NULL);

    /*
     * One short session per update: a renegotiation would only add attack surface. Refused
     * from either side; a client without the renegotiation_info extension (RFC 5746) cannot
     * renegotiate either (MBEDTLS_SSL_LEGACY_NO_RENEGOTIATION, set explicitly).
     */
    mbedtls_ssl_conf_renegotiation(config, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    mbedtls_ssl_conf_legacy_renegotiation(config, MBEDTLS_SSL_LEGACY_NO_RENEGOTIATION);

    /*
     * No session cache and no ticket callback are set, so no session is ever resumed and no
     * ticket is issued: every update starts from a full handshake. No compression: this
     * library is built without MBEDTLS_ZLIB_SUPPORT (checked at the top of the file).
     */

    result = mbedtls_ssl_conf_own_cert(config, &credentials->chain, &credentials->key);
    if (result != 0) {
        ota_mbedtls_error_text(result, cause, sizeof(cause));
        ota_detail_set(detail, detail_size, "mbedtls_ssl_conf_own_cert: %s", cause);
        return result == MBEDTLS_ERR_SSL_ALLOC_FAILED ? OTA_ERR_MEMORY : OTA_ERR_INTERNAL;
    }
    return OTA_OK;
}

/* Everything after the allocation, in the order that gives the most useful first failure. */
static int
ota_mbedtls_load_all(struct ota_tls_credentials *credentials, const char *certificate_path,
                     const char *key_path, const struct ota_tls_policy *policy, int *item,
                     char *detail, size_t detail_size)
{
    *item = OTA_TLS_ITEM_CERTIFICATE;
    int status = ota_mbedtls_load_certificate(credentials, certificate_path, detail,
                                              detail_size);
    if (status == OTA_OK) {
        *item = OTA_TLS_ITEM_KEY;
        status = ota_mbedtls_load_key(credentials, key_path, detail, detail_size);
    }
    if (status == OTA_OK) {
        *item = OTA_TLS_ITEM_PAIR;
        status = ota_mbedtls_check_pair(credentials, certificate_path, key_path, detail,
                                        detail_size);
    }
    if (status == OTA_OK) {
        *item = OTA_TLS_ITEM_OTHER;
        status = ota_mbedtls_seed_random(credentials, detail, detail_size);
    }
    if (status == OTA_OK) {
        status = ota_mbedtls_configure(credentials, policy, detail, detail_size);
    }
    return status;
}

int
ota_tls_credentials_load(const char *certificate_path, const char *key_path,
                         const struct ota_tls_policy *policy,
                         struct ota_tls_credentials **credentials, int *item, char *detail,
                         size_t detail_size)
{
    *credentials = NULL;
    *item = OTA_TLS_ITEM_OTHER;
    if (certificate_path == NULL || key_path == NULL) {
        ota_detail_set(detail, detail_size, "certificate and key paths are required");
        return OTA_ERR_USAGE;
    }

    int status;
    struct ota_tls_credentials *loaded = calloc(1, sizeof(*loaded));
    if (loaded == NULL) {
        ota_detail_set(detail, detail_size, "out of memory");
        return OTA_ERR_MEMORY;
    }
    /* Every member is initialised first so that the one free path below is always valid. */
    mbedtls_x509_crt_init(&loaded->chain);
    mbedtls_pk_init(&loaded->key);
    mbedtls_entropy_init(&loaded->entropy);
    mbedtls_ctr_drbg_init(&loaded->random);
    mbedtls_ssl_config_init(&loaded->config);

    status = ota_mbedtls_load_all(loaded, certificate_path, key_path, policy, item, detail,
                                  detail_size);
    if (status != OTA_OK) {
        ota_tls_credentials_free(loaded);
        return status;
    }
    *credentials = loaded;
    return OTA_OK;
}

const uint8_t *
ota_tls_credentials_der(const struct ota_tls_credentials *credentials, size_t *length)
{
    *length = credentials->chain.raw.len;
    return credentials->chain.raw.p;
}

void
ota_tls_credentials_free(struct ota_tls_credentials *credentials)
{
    if (credentials == NULL) {
        return;
    }
    mbedtls_ssl_config_free(&credentials->config);
    mbedtls_ctr_drbg_free(&credentials->random);
    mbedtls_entropy_free(&credentials->entropy);
    mbedtls_pk_free(&credentials->key);
    mbedtls_x509_crt_free(&credentials->chain);
    free(credentials);
}

/* ---- session: socket callbacks ------------------------------------------------------------- */

/* Turns a failed send/recv errno into the code mbedTLS expects from a bio callback. */
static int
ota_mbedtls_socket_failure(struct ota_tls_session *session, const char *call, int error,
                           int would_block, int failed)
{
    if (error == EAGAIN || error == EWOULDBLOCK) {
        return would_block;
    }
    if (error == ECONNRESET || error == EPIPE) {
        return MBEDTLS_ERR_NET_CONN_RESET;
    }
    session->failed_call = call;
    session->failed_errno = error;
    return failed;
}

/* The largest count a bio callback can report, since it returns an int. */
static size_t
ota_mbedtls_clamp_length(size_t length)
{
    return length > (size_t)INT_MAX ? (size_t)INT_MAX : length;
}

static int
ota_mbedtls_socket_send(void *context, const unsigned char *buffer, size_t length)
{
    struct ota_tls_session *session = context;
    length = ota_mbedtls_clamp_length(length);
    for (;;) {
        /* MSG_NOSIGNAL: a device that vanished must not raise SIGPIPE in the agent. */
        ssize_t sent = send(session->fd, buffer, length, MSG_NOSIGNAL);
        if (sent >= 0) {
            return (int)sent;
        }
        if (errno != EINTR) {
            return ota_mbedtls_socket_failure(session, "send", errno,
                                              MBEDTLS_ERR_SSL_WANT_WRITE,
                                              MBEDTLS_ERR_NET_SEND_FAILED);
        }
    }
}

static int
ota_mbedtls_socket_recv(void *context, unsigned char *buffer, size_t length)
{
    struct ota_tls_session *session = context;
    length = ota_mbedtls_clamp_length(length);
    for (;;) {
        /* 0 is end of file; mbedTLS reports it as MBEDTLS_ERR_SSL_CONN_EOF or a 0 read. */
        ssize_t received = recv(session->fd, buffer, length, 0);
        if (received >= 0) {
            if (received == 0 && length > 0) {
                session->peer_eof = 1;
            }
            return (int)received;
        }
        if (errno != EINTR) {
            return ota_mbedtls_socket_failure(session, "recv", errno,
                                              MBEDTLS_ERR_SSL_WANT_READ,
                                              MBEDTLS_ERR_NET_RECV_FAILED);
        }
    }
}

/* ---- session: results ---------------------------------------------------------------------- */

/* Maps a negative mbedTLS result of `function` to a WANT or a status with its detail. */
static int
ota_mbedtls_session_result(const struct ota_tls_session *session, int result,
                           const char *function, char *detail, size_t detail_size)
{
    char cause[OTA_MBEDTLS_ERROR_TEXT];
    switch (result) {
    case MBEDTLS_ERR_SSL_WANT_READ:
        return OTA_TLS_WANT_READ;
    case MBEDTLS_ERR_SSL_WANT_WRITE:
        return OTA_TLS_WANT_WRITE;
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
        ota_detail_set(detail, detail_size, "%s: peer sent close_notify", function);
        return OTA_ERR_CLOSED;
    case MBEDTLS_ERR_SSL_CONN_EOF:
        ota_detail_set(detail, detail_size, "%s: peer closed the connection", function);
        return OTA_ERR_CLOSED;
    case MBEDTLS_ERR_NET_CONN_RESET:
        ota_detail_set(detail, detail_size, "%s: connection reset by peer", function);
        return OTA_ERR_CLOSED;
    case MBEDTLS_ERR_NET_SEND_FAILED:
    case MBEDTLS_ERR_NET_RECV_FAILED:
        /* A socket call failed for a reason other than the peer leaving: errno tells. */
        ota_detail_set(detail, detail_size, "%s: %s: %s", function,
                       session->failed_call != NULL ? session->failed_call : "socket",
                       ota_mbedtls_errno_text(session->failed_errno, cause, sizeof(cause)));
        return OTA_ERR_IO;
    default:
        break;
    }

    ota_mbedtls_error_text(result, cause, sizeof(cause));
    ota_detail_set(detail, detail_size, "%s: %s", function, cause);
    if (result == MBEDTLS_ERR_SSL_ALLOC_FAILED) {
        return OTA_ERR_MEMORY;
    }
    if (result == MBEDTLS_ERR_SSL_INTERNAL_ERROR) {
        return OTA_ERR_INTERNAL;
    }
    /* Garbage, an old protocol version, a failed MAC, a fatal alert: the peer broke TLS. */
    return OTA_ERR_PROTOCOL;
}

/* ---- session ------------------------------------------------------------------------------- */

struct ota_tls_session *
ota_tls_session_new(const struct ota_tls_credentials *credentials, int fd, char *detail,
                    size_t detail_size)
{
    if (credentials == NULL || fd < 0) {
        ota_detail_set(detail, detail_size, "TLS session: no credentials or no socket");
        return NULL;
    }

    struct ota_tls_session *session = calloc(1, sizeof(*session));
    if (session == NULL) {
        ota_detail_set(detail, detail_size, "out of memory");
        return NULL;
    }
    mbedtls_ssl_init(&session->ssl);
    session->fd = fd;

    int result = mbedtls_ssl_setup(&session->ssl, &credentials->config);
    if (result != 0) {
        char cause[OTA_MBEDTLS_ERROR_TEXT];
        ota_mbedtls_error_text(result, cause, sizeof(cause));
        ota_detail_set(detail, detail_size, "mbedtls_ssl_setup: %s", cause);
        ota_tls_session_free(session);
        return NULL;
    }
    /* Non-blocking socket: no receive-with-timeout callback; conn.c does the waiting. */
    mbedtls_ssl_set_bio(&session->ssl, session, ota_mbedtls_socket_send,
                        ota_mbedtls_socket_recv, NULL);
    return session;
}

int
ota_tls_session_handshake(struct ota_tls_session *session, char *detail, size_t detail_size)
{
    ota_mbedtls_capture_begin(&session->tx_keys);
    int result = mbedtls_ssl_handshake(&session->ssl);
    ota_mbedtls_capture_end();
    if (result == 0) {
        session->handshake_done = 1;
        return OTA_TLS_DONE;
    }
    return ota_mbedtls_session_result(session, result, "mbedtls_ssl_handshake", detail,
                                      detail_size);
}

int
ota_tls_session_awaits_hello(const struct ota_tls_session *session)
{
    /* The server's state moves past CLIENT_HELLO once it has parsed the whole hello. */
    return session->ssl.state <= MBEDTLS_SSL_CLIENT_HELLO;
}

int
ota_tls_session_read(struct ota_tls_session *session, void *buffer, size_t capacity,
                     size_t *received, char *detail, size_t detail_size)
{
    *received = 0;
    if (session->kernel_tx || session->seal.active) {
        /* mbedTLS answers some records with an alert of its own (no_renegotiation, a fatal
         * error), written with its stale sequence number: never once it gave up its output. */
        ota_detail_set(detail, detail_size,
                       "mbedtls_ssl_read: the transmit side is no longer mbedTLS's");
        return OTA_ERR_USAGE;
    }
    if (capacity == 0) {
        /* mbedtls_ssl_read would return 0, which means end of file. */
        ota_detail_set(detail, detail_size, "mbedtls_ssl_read: no room to read into");
        return OTA_ERR_USAGE;
    }

    /*
     * mbedTLS 2.28 also returns 0 when a read meets only empty application-data records,
     * which TLS allows; only a real end of file is a close. Its own limit (more than three
     * empty records in a row fail with MBEDTLS_ERR_SSL_INVALID_MAC) bounds this loop.
     */
    int result;
    do {
        result = mbedtls_ssl_read(&session->ssl, buffer, capacity);
    } while (result == 0 && !session->peer_eof);
    if (result > 0) {
        *received = (size_t)result;
        return OTA_TLS_DONE;
    }
    if (result == 0) {
        /* The socket reached end of file without a close_notify first. */
        ota_detail_set(detail, detail_size, "mbedtls_ssl_read: peer closed the connection");
        return OTA_ERR_CLOSED;
    }
    return ota_mbedtls_session_result(session, result, "mbedtls_ssl_read", detail,
                                      detail_size);
}

/* Maps a failed send(2) or sendfile(2) on a kernel TLS socket. */
static int
ota_mbedtls_kernel_failure(const char *call, char *detail, size_t detail_size)
{
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return OTA_TLS_WANT_WRITE;
    }
    int closed = errno == EPIPE || errno == ECONNRESET;
    ota_detail_set(detail, detail_size, "%s: %s", call,
                   closed ? "connection reset by peer" : strerror(errno));
    return closed ? OTA_ERR_CLOSED : OTA_ERR_IO;
}

/* Plain bytes on a kernel TLS socket become application-data records. */
static int
ota_mbedtls_kernel_write(struct ota_tls_session *session, const void *buffer, size_t length,
                         size_t *written, char *detail, size_t detail_size)
{
    ssize_t result = send(session->fd, buffer, length, MSG_NOSIGNAL);
    if (result >= 0) {
        *written = (size_t)result;
        return OTA_TLS_DONE;
    }
    return ota_mbedtls_kernel_failure("send", detail, detail_size);
}

int
ota_tls_session_write(struct ota_tls_session *session, const void *buffer, size_t length,
                      size_t *written, char *detail, size_t detail_size)
{
    *written = 0;
    if (length == 0) {
        return OTA_TLS_DONE;
    }

    /*
     * One record per call, no larger than the negotiated maximum fragment length. The clamp
     * depends only on `length` and the session, so a call repeated after a WANT with the same
     * buffer and length passes mbedTLS the same arguments, as it requires: the record is
     * already built and the repeated call only flushes it.
     */
    if (session->kernel_tx) {
        return ota_mbedtls_kernel_write(session, buffer, length, written, detail, detail_size);
    }
    if (session->seal.active) {
        return ota_mbedtls_seal_write(&session->seal, session->fd, buffer, length,
                                      ota_tls_session_max_record(session), written, detail,
                                      detail_size);
    }

    size_t chunk = length;
    size_t record = ota_tls_session_max_record(session);
    if (chunk > record) {
        chunk = record;
    }

    int result = mbedtls_ssl_write(&session->ssl, buffer, chunk);
    if (result >= 0) {
        *written = (size_t)result;
        return OTA_TLS_DONE;
    }
    return ota_mbedtls_session_result(session, result, "mbedtls_ssl_write", detail,
                                      detail_size);
}

int
ota_tls_session_close_notify(struct ota_tls_session *session, char *detail, size_t detail_size)
{
    if (session->kernel_tx) {
        /* mbedTLS must not write on a socket whose records the kernel now numbers. */
        return ota_mbedtls_kernel_close_notify(session->fd, detail, detail_size);
    }
    if (session->seal.active) {
        /* Likewise for the sealer: the alert goes out under the next sequence number. */
        return ota_mbedtls_seal_close_notify(&session->seal, session->fd, detail, detail_size);
    }

    /* After a WANT_WRITE the repeated call flushes the alert already queued. */
    int result = mbedtls_ssl_close_notify(&session->ssl);
    if (result == 0) {
        return OTA_TLS_DONE;
    }
    return ota_mbedtls_session_result(session, result, "mbedtls_ssl_close_notify", detail,
                                      detail_size);
}

int
ota_tls_session_kernel_send(struct ota_tls_session *session, char *note, size_t note_size)
{
    if (!session->kernel_tried && session->handshake_done) {
        session->kernel_tried = 1;
        session->kernel_tx = ota_mbedtls_kernel_handoff(&session->ssl, session->fd,
                                                        &session->tx_keys, session->kernel_note,
                                                        sizeof(session->kernel_note));
    }
    ota_detail_set(note, note_size, "%s", session->kernel_note);
    return session->kernel_tx;
}

void
ota_tls_session_user_send(struct ota_tls_session *session, char *engine, size_t engine_size)
{
    if (!session->handshake_done || session->kernel_tx) {
        ota_detail_set(engine, engine_size, "user-space (mbedTLS)");
        return;
    }
    if (!session->seal_tried) {
        /* Once: after this the kernel hand-off is no longer tried, and the keys are gone. */
        session->seal_tried = 1;
        session->kernel_tried = 1;
        ota_mbedtls_seal_handoff(&session->ssl, &session->tx_keys, &session->seal,
                                 session->seal_engine, sizeof(session->seal_engine));
    }
    ota_detail_set(engine, engine_size, "%s", session->seal_engine);
}

int
ota_tls_session_sendfile(struct ota_tls_session *session, int file_fd, uint64_t offset,
                         size_t length, size_t *sent, char *detail, size_t detail_size)
{
    *sent = 0;
    if (!session->kernel_tx) {
        ota_detail_set(detail, detail_size, "sendfile: kernel TLS is not in use on this session");
        return OTA_ERR_USAGE;
    }

    off_t position = (off_t)offset;
    ssize_t result = sendfile(session->fd, file_fd, &position, length);
    if (result >= 0) {
        *sent = (size_t)result;
        return OTA_TLS_DONE;
    }
    return ota_mbedtls_kernel_failure("sendfile", detail, detail_size);
}

size_t
ota_tls_session_max_record(const struct ota_tls_session *session)
{
    /* Already the smaller of the output buffer and a negotiated max_fragment_length. */
    int payload = mbedtls_ssl_get_max_out_record_payload(&session->ssl);
    return payload > 0 ? (size_t)payload : OTA_MBEDTLS_RECORD_MAX;
}

const char *
ota_tls_session_protocol(const struct ota_tls_session *session)
{
    /* Before the handshake mbedTLS would name a version nobody negotiated. */
    if (!session->handshake_done) {
        return "";
    }
    return mbedtls_ssl_get_version(&session->ssl);
}

const char *
ota_tls_session_cipher(const struct ota_tls_session *session)
{
    const char *name = session->handshake_done ? mbedtls_ssl_get_ciphersuite(&session->ssl)
                                               : NULL;
    return name != NULL ? name : "";
}

void
ota_tls_session_free(struct ota_tls_session *session)
{
    if (session == NULL) {
        return;
    }
    /* Keys never handed on (a refused device, a failed transfer) and the sealer's schedule. */
    mbedtls_platform_zeroize(&session->tx_keys, sizeof(session->tx_keys));
    ota_mbedtls_seal_wipe(&session->seal);
    mbedtls_ssl_free(&session->ssl);
    free(session);
}

/* ---- SHA-256 ------------------------------------------------------------------------------- */

struct ota_tls_sha256 *
ota_tls_sha256_new(void)
{
    struct ota_tls_sha256 *hash = calloc(1, sizeof(*hash));
    if (hash == NULL) {
        return NULL;
    }
    mbedtls_sha256_init(&hash->context);
    if (mbedtls_sha256_starts_ret(&hash->context, 0) != 0) {
        ota_tls_sha256_free(hash);
        return NULL;
    }
    return hash;
}

int
ota_tls_sha256_update(struct ota_tls_sha256 *context, const void *data, size_t length)
{
    int result = mbedtls_sha256_update_ret(&context->context, data, length);
    return result == 0 ? OTA_OK : OTA_ERR_INTERNAL;
}

int
ota_tls_sha256_final(struct ota_tls_sha256 *context, uint8_t digest[32])
{
    int result = mbedtls_sha256_finish_ret(&context->context, digest);
    return result == 0 ? OTA_OK : OTA_ERR_INTERNAL;
}

void
ota_tls_sha256_free(struct ota_tls_sha256 *context)
{
    if (context == NULL) {
        return;
    }
    mbedtls_sha256_free(&context->context);
    free(context);
}

/* ---- AES-GCM by the library (tests) -------------------------------------------------------- */

int
ota_tls_aes_gcm_reference(const unsigned char *key, size_t key_length, const unsigned char iv[12],
                          const unsigned char *aad, size_t aad_length, const unsigned char *input,
                          size_t length, unsigned char *output, unsigned char tag[16])
{
    if (key_length != 16 && key_length != 32) {
        return OTA_ERR_USAGE;
    }
    mbedtls_gcm_context gcm;
    mbedtls_gcm_init(&gcm);
    int result = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, key,
                                    (unsigned int)key_length * 8);
    if (result == 0) {
        result = mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, length, iv, 12, aad,
                                           aad_length, input, output, 16, tag);
    }
    mbedtls_gcm_free(&gcm);
    return result == 0 ? OTA_OK : OTA_ERR_INTERNAL;
}

/* ---- certificate inspection ---------------------------------------------------------------- */

/*
 * Called by the parser for each extension it does not know. Accepting them all, critical or
 * not, is what lets DICE certificates through: they carry the critical DICE attestation
 * extension (1.3.6.1.4.1.11129.2.1.24), which the plain parser refuses. Inspection only reads
 * names and dates; judging the extension is the verifier's job.
 */
static int
ota_mbedtls_accept_extension(void *context, mbedtls_x509_crt const *certificate,
                             mbedtls_x509_buf const *oid, int critical, const unsigned char *start,
                             const unsigned char *end)
{
    (void)context;
    (void)certificate;
    (void)oid;
    (void)critical;
    (void)start;
    (void)end;
    return 0;
}

static int
ota_mbedtls_is_leap_year(int64_t year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

/* Days from 0000-01-01 to January 1st of `year` (year >= 0), proleptic Gregorian calendar. */
static int64_t
ota_mbedtls_days_before_year(int64_t year)
{
    if (year <= 0) {
        return 0;
    }
    /* Leap years in 0 .. year-1: year 0 itself, then every 4th, less centuries, plus 400s. */
    int64_t last = year - 1;
    int64_t leap_years = 1 + last / 4 - last / 100 + last / 400;
    return 365 * year + leap_years;
}

/* Days from January 1st to the first of `month` (1-12) in `year`. */
static int64_t
ota_mbedtls_days_before_month(int64_t year, int month)
{
    static const int16_t cumulative[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    int64_t days = cumulative[month - 1];
    if (month > 2 && ota_mbedtls_is_leap_year(year)) {
        days += 1;
    }
    return days;
}

/*
 * Seconds since 1970-01-01T00:00:00Z. X.509 times are UTC, so this is plain arithmetic and
 * depends on no time zone setting. The parser has checked the ranges; they are checked again
 * so that a bad month cannot index outside the table.
 */
static int64_t
ota_mbedtls_unix_time(const mbedtls_x509_time *moment)
{
    if (moment->year < 0 || moment->mon < 1 || moment->mon > 12 || moment->day < 1) {
        return 0;
    }
    int64_t days = ota_mbedtls_days_before_year(moment->year) -
                   ota_mbedtls_days_before_year(1970) +
                   ota_mbedtls_days_before_month(moment->year, moment->mon) + (moment->day - 1);
    return days * 86400 + (int64_t)moment->hour * 3600 + (int64_t)moment->min * 60 +
           moment->sec;
}

/* Host names compare without regard to ASCII case; an embedded NUL never matches. */
static int
ota_mbedtls_is_agent_name(const unsigned char *text, size_t length)
{
    size_t wanted = sizeof(ota_mbedtls_agent_name) - 1;
    return length == wanted &&
           strncasecmp((const char *)text, ota_mbedtls_agent_name, wanted) == 0;
}

static int
ota_mbedtls_has_agent_name(const mbedtls_x509_crt *certificate)
{
    /* The same rule as the devices' own check: DNS names when the certificate has a
     * subjectAltName extension, the CN only when it has none. */
    if (certificate->ext_types & MBEDTLS_X509_EXT_SUBJECT_ALT_NAME) {
        const unsigned char dns_tag = MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME;
        for (const mbedtls_x509_sequence *name = &certificate->subject_alt_names; name != NULL;
             name = name->next) {
            if (name->buf.p != NULL && name->buf.tag == dns_tag &&
                ota_mbedtls_is_agent_name(name->buf.p, name->buf.len)) {
                return 1;
            }
        }
        return 0;
    }

    for (const mbedtls_x509_name *entry = &certificate->subject; entry != NULL;
         entry = entry->next) {
        if (entry->oid.p != NULL && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &entry->oid) == 0 &&
            ota_mbedtls_is_agent_name(entry->val.p, entry->val.len)) {
            return 1;
        }
    }
    return 0;
}

/* Fills `info` from a parsed certificate whose DER is exactly `der`. */
static int
ota_mbedtls_describe(const mbedtls_x509_crt *certificate, const uint8_t *der, size_t length,
                     ota_cert_info *info)
{
    /* Too long a subject comes back cut short but terminated: enough to name the device. */
    if (mbedtls_x509_dn_gets(info->subject, sizeof(info->subject), &certificate->subject) < 0) {
        info->subject[sizeof(info->subject) - 1] = '\0';
    }
    info->not_before = ota_mbedtls_unix_time(&certificate->valid_from);
    info->not_after = ota_mbedtls_unix_time(&certificate->valid_to);
    info->has_ota_agent_name = ota_mbedtls_has_agent_name(certificate);

    struct ota_tls_sha256 *hash = ota_tls_sha256_new();
    if (hash == NULL) {
        return OTA_ERR_MEMORY;
    }
    int status = ota_tls_sha256_update(hash, der, length);
    if (status == OTA_OK) {
        status = ota_tls_sha256_final(hash, info->sha256);
    }
    ota_tls_sha256_free(hash);
    return status;
}

int
ota_tls_cert_inspect(const uint8_t *der, size_t length, ota_cert_info *info, char *detail,
                     size_t detail_size)
{
    if (der == NULL || length == 0) {
        ota_detail_set(detail, detail_size, "not an X.509 certificate: no bytes");
        return OTA_ERR_PROTOCOL;
    }

    mbedtls_x509_crt certificate;
    mbedtls_x509_crt_init(&certificate);
    int result = mbedtls_x509_crt_parse_der_with_ext_cb(&certificate, der, length, 1,
                                                        ota_mbedtls_accept_extension, NULL);
    if (result != 0) {
        char cause[OTA_MBEDTLS_ERROR_TEXT];
        ota_mbedtls_error_text(result, cause, sizeof(cause));
        ota_detail_set(detail, detail_size, "not an X.509 certificate: %s", cause);
        mbedtls_x509_crt_free(&certificate);
        return OTA_ERR_PROTOCOL;
    }
    /* The parser stops at the end of the first certificate; the bytes must be only that. */
    if (certificate.raw.len != length) {
        ota_detail_set(detail, detail_size,
                       "not an X.509 certificate: %zu bytes follow the certificate",
                       length - certificate.raw.len);
        mbedtls_x509_crt_free(&certificate);
        return OTA_ERR_PROTOCOL;
    }

    memset(info, 0, sizeof(*info));
    int status = ota_mbedtls_describe(&certificate, der, length, info);
    mbedtls_x509_crt_free(&certificate);
    if (status != OTA_OK) {
        ota_detail_set(detail, detail_size, "certificate inspection: SHA-256 failed");
    }
    return status;
}

/* ---- identity ------------------------------------------------------------------------------ */

int
ota_tls_session_peer_certificate(struct ota_tls_session *session, const uint8_t **der,
                                 size_t *length)
{
    /* Never asked for (see ota_mbedtls_configure): no device presents one. */
    *der = NULL;
    *length = 0;
    return OTA_OK;
}

int
ota_tls_backend_supports_proof(void)
{
    return 0;
}

const char *
ota_tls_backend_name(void)
{
    return "mbedtls";
}

void
ota_tls_thread_done(void)
{
    /* mbedTLS keeps no per-thread state; the kernel hand-off's key capture is per session. */
}

/* mbedTLS 2.28's TLS 1.3 is an experimental prototype (and off in Debian's build). */
uint16_t
ota_tls_backend_max_version(void)
{
    return OTA_TLS_POLICY_VERSION_1_2;
}

static char ota_mbedtls_version_text[32];
static pthread_once_t ota_mbedtls_version_once = PTHREAD_ONCE_INIT;

static void
ota_mbedtls_read_version(void)
{
    /* The running library's own words ("mbed TLS 2.28.3"), which may be newer than the headers. */
    mbedtls_version_get_string_full(ota_mbedtls_version_text);
}

const char *
ota_tls_backend_version(void)
{
    pthread_once(&ota_mbedtls_version_once, ota_mbedtls_read_version);
    return ota_mbedtls_version_text;
}

#endif /* OTA_BACKEND_MBEDTLS */
