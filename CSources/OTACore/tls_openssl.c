/*
 * tls_openssl.c - the TLS backend on OpenSSL 3.
 *
 * Sessions use OpenSSL's own socket BIO (SSL_set_fd) rather than a custom one because that is
 * the BIO kernel TLS hangs off. The error queue is thread-local: it is cleared before each
 * call so that what is read after a failure belongs to that failure.
 */

#ifdef OTA_BACKEND_OPENSSL

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ota_internal.h"
#include "tls_backend.h"

/* Room for every policy suite's name (or group's), ':' between them. */
#define OTA_OPENSSL_LIST_SIZE 512

struct ota_tls_credentials {
    SSL_CTX *context;
    uint8_t *der;
    size_t der_length;
};

struct ota_tls_session {
    SSL *ssl;
    uint8_t *peer_der; /* the client certificate in DER, once asked for (OPENSSL_free) */
    size_t peer_der_length;
};

struct ota_tls_sha256 {
    EVP_MD_CTX *digest;
};

/* Appends OpenSSL's oldest queued error, or a fallback, to a "call: " prefix. */
static void
ota_openssl_detail(char *detail, size_t detail_size, const char *call)
{
    unsigned long error = ERR_peek_error();
    if (error == 0) {
        ota_detail_set(detail, detail_size, "%s failed", call);
        return;
    }

    char text[160];
    ERR_error_string_n(error, text, sizeof(text));
    ota_detail_set(detail, detail_size, "%s: %s", call, text);
    ERR_clear_error();
}

/* The policy's suites of one protocol version, as OpenSSL's ':' list ("" for none). */
static void
ota_openssl_suite_list(const struct ota_tls_policy *policy, uint16_t version, char *list,
                       size_t list_size)
{
    size_t used = 0;
    list[0] = '\0';
    for (size_t index = 0; index < policy->count && used < list_size; index++) {
        const struct ota_tls_suite *suite = policy->suites[index];
        if (suite->version != version) {
            continue;
        }
        int wrote = snprintf(list + used, list_size - used, "%s%s", used > 0 ? ":" : "",
                             suite->openssl_name);
        if (wrote < 0) {
            break;
        }
        used += (size_t)wrote;
    }
}

static void
ota_openssl_group_list(char *list, size_t list_size)
{
    size_t used = 0;
    list[0] = '\0';
    for (size_t index = 0; index < OTA_TLS_POLICY_GROUP_COUNT && used < list_size; index++) {
        int wrote = snprintf(list + used, list_size - used, "%s%s", used > 0 ? ":" : "",
                             ota_tls_policy_groups[index].openssl_name);
        if (wrote < 0) {
            break;
        }
        used += (size_t)wrote;
    }
}

/*
 * The suites of each version. OpenSSL keeps TLS 1.2 and TLS 1.3 suites in separate lists.
 * A policy naming no TLS 1.3 suite turns TLS 1.3 off by the maximum version: an empty TLS 1.3
 * list alone makes OpenSSL 3 fail every handshake with "no ciphers available".
 * SSL_CTX_set_cipher_list refuses an empty list, so with the minimum at 1.3 (no TLS 1.2
 * suite in the policy) it gets one that can never be used instead.
 */
static int
ota_openssl_set_suites(SSL_CTX *context, const struct ota_tls_policy *policy)
{
    char list[OTA_OPENSSL_LIST_SIZE];
    ota_openssl_suite_list(policy, OTA_TLS_POLICY_VERSION_1_2, list, sizeof(list));
    const char *tls12 = list[0] != '\0' ? list : ota_tls_policy_suites[0].openssl_name;
    if (SSL_CTX_set_cipher_list(context, tls12) != 1) {
        return OTA_ERR_INTERNAL;
    }
    ota_openssl_suite_list(policy, OTA_TLS_POLICY_VERSION_1_3, list, sizeof(list));
    if (SSL_CTX_set_ciphersuites(context, list) != 1) {
        return OTA_ERR_INTERNAL;
    }
    if (list[0] == '\0' && SSL_CTX_set_max_proto_version(context, TLS1_2_VERSION) != 1) {
        return OTA_ERR_INTERNAL;
    }
    ota_openssl_group_list(list, sizeof(list));
    return SSL_CTX_set1_groups_list(context, list) == 1 ? OTA_OK : OTA_ERR_INTERNAL;
}

/*
 * Which certificate verification errors a device's TLS client certificate may carry. A DICE
 * attestation certificate is issued by a device CA the agent does not know (chain validation
 * is Dice-Auth's job), carries a critical extension generic X.509 code does not understand
 * (1.3.6.1.4.1.11129.2.1.24) and has key usage keyCertSign only, which OpenSSL finds unfit for
 * a TLS client. None of that weakens what the handshake proves: the device's CertificateVerify
 * is still checked against the certificate's key, so it holds the private key.
 *
 * Validity dates are accepted too: they say nothing about who holds the key, and a legacy
 * device's certificate reaches Dice-Auth whatever its dates, so Dice-Auth alone decides on
 * them for both kinds of device (a gateway with a wrong clock must not lock out only the
 * devices that prove possession). Everything else fails the handshake: a bad signature on a
 * certificate whose issuer came with it, a chain too long, a key too weak for the security
 * level, an unreadable certificate.
 */
static int
ota_openssl_accepted_error(int error)
{
    switch (error) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION:
    case X509_V_ERR_INVALID_PURPOSE:
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return 1;
    default:
        return 0;
    }
}

static int
ota_openssl_verify_client(int preverified, X509_STORE_CTX *store)
{
    if (preverified) {
        return 1;
    }
    return ota_openssl_accepted_error(X509_STORE_CTX_get_error(store));
}

/*
 * Asks every client for a certificate, optionally: SSL_VERIFY_PEER without
 * SSL_VERIFY_FAIL_IF_NO_PEER_CERT, so a legacy device that sends none handshakes as before.
 * No CA names are sent (the CertificateRequest's list is empty: a device sends its one
 * certificate whatever the list says) and the store holds no CA, so no certificate chains to
 * anything; the callback above decides. Session tickets and the cache stay off (see
 * ota_openssl_configure), so no session is ever resumed without a fresh CertificateVerify.
 */
static void
ota_openssl_request_client_certificate(SSL_CTX *context)
{
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER, ota_openssl_verify_client);
}

static int
ota_openssl_configure(SSL_CTX *context, const struct ota_tls_policy *policy)
{
    int minimum = policy->min_version == OTA_TLS_POLICY_VERSION_1_3 ? TLS1_3_VERSION
                                                                    : TLS1_2_VERSION;
    if (SSL_CTX_set_min_proto_version(context, minimum) != 1) {
        return OTA_ERR_INTERNAL;
    }
    /*
     * No renegotiation (also refuses a client's request for one), no compression (CRIME),
     * no session tickets and no session cache: every update is one full handshake.
     * SSL_OP_ENABLE_KTLS: once the handshake is done OpenSSL hands the transmit keys to the
     * kernel when it can (the `tls` module, a supported cipher, full-size records) and
     * silently keeps encrypting itself when it cannot; ota_tls_session_kernel_send tells.
     * While the kernel has no tls module, most sessions do not ask (ota_tls_session_new).
     */
    SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                     SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                     SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_ENABLE_KTLS);
    /* SSL_MODE_RELEASE_BUFFERS: a connection holds no empty 16 KiB read buffer while it only
     * sends, which is most of its life. */
    SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_OFF);
    /* TLS 1.3 sends tickets even with SSL_OP_NO_TICKET unless told to send none. */
    SSL_CTX_set_num_tickets(context, 0);
    ota_openssl_request_client_certificate(context);
    return ota_openssl_set_suites(context, policy);
}

static int
ota_openssl_load_pair(SSL_CTX *context, const char *certificate_path, const char *key_path,
                      int *item, char *detail, size_t detail_size)
{
    *item = OTA_TLS_ITEM_CERTIFICATE;
    if (SSL_CTX_use_certificate_chain_file(context, certificate_path) != 1) {
        char cause[200];
        ota_openssl_detail(cause, sizeof(cause), "PEM");
        ota_detail_set(detail, detail_size, "cannot load certificate %s (%s)", certificate_path,
                       cause);
        return OTA_ERR_CONFIG;
    }

    *item = OTA_TLS_ITEM_KEY;
    if (SSL_CTX_use_PrivateKey_file(context, key_path, SSL_FILETYPE_PEM) != 1) {
        /* OpenSSL reports a mismatch here too; name it plainly when that is the cause. */
        int mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        ERR_clear_error();
        if (mismatch) {
            *item = OTA_TLS_ITEM_PAIR;
            ota_detail_set(detail, detail_size, "certificate %s and key %s do not match",
                           certificate_path, key_path);
        } else {
            ota_detail_set(detail, detail_size,
                           "cannot load private key %s: not a PEM private key (or encrypted)",
                           key_path);
        }
        return OTA_ERR_CONFIG;
    }

    *item = OTA_TLS_ITEM_PAIR;
    if (SSL_CTX_check_private_key(context) != 1) {
        ERR_clear_error();
        ota_detail_set(detail, detail_size, "certificate %s and key %s do not match",
                       certificate_path, key_path);
        return OTA_ERR_CONFIG;
    }
    return OTA_OK;
}

static int
ota_openssl_keep_der(struct ota_tls_credentials *credentials)
{
    X509 *leaf = SSL_CTX_get0_certificate(credentials->context);
    unsigned char *der = NULL;
    int length = leaf != NULL ? i2d_X509(leaf, &der) : -1;
    if (length <= 0) {
        return OTA_ERR_INTERNAL;
    }

    credentials->der = der;
    credentials->der_length = (size_t)length;
    return OTA_OK;
}

int
ota_tls_credentials_load(const char *certificate_path, const char *key_path,
                         const struct ota_tls_policy *policy,
                         struct ota_tls_credentials **credentials, int *item, char *detail,
                         size_t detail_size)
{
    *credentials = NULL;
    *item = OTA_TLS_ITEM_OTHER;
    int status;
    struct ota_tls_credentials *loaded = calloc(1, sizeof(*loaded));
    if (loaded == NULL) {
        return OTA_ERR_MEMORY;
    }
    ERR_clear_error();
    loaded->context = SSL_CTX_new(TLS_server_method());
    if (loaded->context == NULL || ota_openssl_configure(loaded->context, policy) != OTA_OK) {
        ota_openssl_detail(detail, detail_size, "SSL_CTX_new");
        ota_tls_credentials_free(loaded);
        return OTA_ERR_INTERNAL;
    }

    status = ota_openssl_load_pair(loaded->context, certificate_path, key_path, item, detail,
                                   detail_size);
    if (status == OTA_OK) {
        *item = OTA_TLS_ITEM_OTHER;
        status = ota_openssl_keep_der(loaded);
    }
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
    *length = credentials->der_length;
    return credentials->der;
}

void
ota_tls_credentials_free(struct ota_tls_credentials *credentials)
{
    if (credentials == NULL) {
        return;
    }
    SSL_CTX_free(credentials->context);
    OPENSSL_free(credentials->der);
    free(credentials);
}

struct ota_tls_session *
ota_tls_session_new(const struct ota_tls_credentials *credentials, int fd, char *detail,
                    size_t detail_size)
{
    struct ota_tls_session *session = calloc(1, sizeof(*session));
    if (session == NULL) {
        ota_detail_set(detail, detail_size, "out of memory");
        return NULL;
    }

    ERR_clear_error();
    session->ssl = SSL_new(credentials->context);
    if (session->ssl == NULL || SSL_set_fd(session->ssl, fd) != 1) {
        ota_openssl_detail(detail, detail_size, "SSL_new");
        ota_tls_session_free(session);
        return NULL;
    }
    if (!ota_kernel_tls_worth_trying()) {
        SSL_clear_options(session->ssl, SSL_OP_ENABLE_KTLS);
    }
    SSL_set_accept_state(session->ssl);
    return session;
}

/* Maps the outcome of a failed SSL_* call to a WANT or a status with a detail. */
static int
ota_openssl_result(struct ota_tls_session *session, int returned, const char *call,
                   char *detail, size_t detail_size)
{
    int saved_errno = errno;
    switch (SSL_get_error(session->ssl, returned)) {
    case SSL_ERROR_WANT_READ:
        return OTA_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return OTA_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        ota_detail_set(detail, detail_size, "%s: peer closed the connection", call);
        return OTA_ERR_CLOSED;
    case SSL_ERROR_SYSCALL:
        if (saved_errno == 0 || saved_errno == ECONNRESET || saved_errno == EPIPE) {
            ota_detail_set(detail, detail_size, "%s: connection reset by peer", call);
            ERR_clear_error();
            return OTA_ERR_CLOSED;
        }
        ota_detail_set(detail, detail_size, "%s: %s", call, strerror(saved_errno));
        ERR_clear_error();
        return OTA_ERR_IO;
    default:
        ota_openssl_detail(detail, detail_size, call);
        return OTA_ERR_PROTOCOL;
    }
}

int
ota_tls_session_handshake(struct ota_tls_session *session, char *detail, size_t detail_size)
{
    ERR_clear_error();
    errno = 0;
    int returned = SSL_do_handshake(session->ssl);
    if (returned == 1) {
        return OTA_TLS_DONE;
    }
    return ota_openssl_result(session, returned, "handshake", detail, detail_size);
}

int
ota_tls_session_awaits_hello(const struct ota_tls_session *session)
{
    /* The server states before its first write: nothing read yet, or the hello in part. */
    OSSL_HANDSHAKE_STATE state = SSL_get_state(session->ssl);
    return state == TLS_ST_BEFORE || state == TLS_ST_SR_CLNT_HELLO;
}

int
ota_tls_session_read(struct ota_tls_session *session, void *buffer, size_t capacity,
                     size_t *received, char *detail, size_t detail_size)
{
    ERR_clear_error();
    errno = 0;
    *received = 0;
    int returned = SSL_read_ex(session->ssl, buffer, capacity, received);
    if (returned == 1) {
        return OTA_TLS_DONE;
    }
    return ota_openssl_result(session, returned, "read", detail, detail_size);
}

int
ota_tls_session_write(struct ota_tls_session *session, const void *buffer, size_t length,
                      size_t *written, char *detail, size_t detail_size)
{
    ERR_clear_error();
    errno = 0;
    *written = 0;
    int returned = SSL_write_ex(session->ssl, buffer, length, written);
    if (returned == 1) {
        return OTA_TLS_DONE;
    }
    return ota_openssl_result(session, returned, "write", detail, detail_size);
}

int
ota_tls_session_close_notify(struct ota_tls_session *session, char *detail, size_t detail_size)
{
    ERR_clear_error();
    errno = 0;
    /* 0 means "sent, the peer's has not arrived": all we ask for. */
    int returned = SSL_shutdown(session->ssl);
    if (returned >= 0) {
        return OTA_TLS_DONE;
    }
    return ota_openssl_result(session, returned, "close_notify", detail, detail_size);
}

int
ota_tls_session_kernel_send(struct ota_tls_session *session, char *note, size_t note_size)
{
    BIO *socket_bio = SSL_get_wbio(session->ssl);
    int kernel = SSL_is_init_finished(session->ssl) && socket_bio != NULL &&
                 BIO_get_ktls_send(socket_bio) == 1;
    if (kernel) {
        ota_detail_set(note, note_size, "kernel TLS: %s", ota_tls_session_cipher(session));
    } else if (!ota_kernel_tls_module_loaded()) {
        ota_detail_set(note, note_size, "user-space encryption: kernel TLS unavailable "
                                        "(no tls module)");
    } else {
        /* OpenSSL does not say why it kept the keys: a cipher or record size it cannot
         * offload, for instance. */
        ota_detail_set(note, note_size, "user-space encryption: OpenSSL kept %s in user space",
                       ota_tls_session_cipher(session));
    }
    return kernel;
}

void
ota_tls_session_user_send(struct ota_tls_session *session, char *engine, size_t engine_size)
{
    /* OpenSSL's own AES-GCM is already as fast as this machine's (AES-NI, VPCLMULQDQ). */
    ota_detail_set(engine, engine_size, "user-space (OpenSSL)");
}

int
ota_tls_session_sendfile(struct ota_tls_session *session, int file_fd, uint64_t offset,
                         size_t length, size_t *sent, char *detail, size_t detail_size)
{
    ERR_clear_error();
    errno = 0;
    *sent = 0;
    ossl_ssize_t returned = SSL_sendfile(session->ssl, file_fd, (off_t)offset, length, 0);
    if (returned >= 0) {
        *sent = (size_t)returned;
        return OTA_TLS_DONE;
    }
    return ota_openssl_result(session, (int)returned, "sendfile", detail, detail_size);
}

size_t
ota_tls_session_max_record(const struct ota_tls_session *session)
{
    SSL_SESSION *negotiated = SSL_get_session(session->ssl);
    uint8_t code = negotiated != NULL ? SSL_SESSION_get_max_fragment_length(negotiated) : 0;
    if (code >= TLSEXT_max_fragment_length_512 && code <= TLSEXT_max_fragment_length_4096) {
        return (size_t)512 << (code - TLSEXT_max_fragment_length_512);
    }
    return 16384;
}

const char *
ota_tls_session_protocol(const struct ota_tls_session *session)
{
    /* Before the handshake OpenSSL names the highest version it would offer; we promise "". */
    return SSL_is_init_finished(session->ssl) ? SSL_get_version(session->ssl) : "";
}

const char *
ota_tls_session_cipher(const struct ota_tls_session *session)
{
    if (!SSL_is_init_finished(session->ssl)) {
        return "";
    }
    const char *name = SSL_get_cipher_name(session->ssl);
    return name != NULL ? name : "";
}

int
ota_tls_session_peer_certificate(struct ota_tls_session *session, const uint8_t **der,
                                 size_t *length)
{
    *der = NULL;
    *length = 0;
    if (!SSL_is_init_finished(session->ssl)) {
        return OTA_OK;
    }
    if (session->peer_der == NULL) {
        /* OpenSSL keeps the certificate decoded; i2d encodes it again: the signed part as it
         * was received, the rest in DER. A certificate sent in another encoding than DER then
         * differs from its copy sent as data, and the device is refused: the safe side. */
        X509 *certificate = SSL_get0_peer_certificate(session->ssl);
        if (certificate == NULL) {
            return OTA_OK;
        }
        unsigned char *encoded = NULL;
        int encoded_length = i2d_X509(certificate, &encoded);
        if (encoded_length <= 0) {
            ERR_clear_error();
            return OTA_ERR_INTERNAL;
        }
        session->peer_der = encoded;
        session->peer_der_length = (size_t)encoded_length;
    }
    *der = session->peer_der;
    *length = session->peer_der_length;
    return OTA_OK;
}

int
ota_tls_backend_supports_proof(void)
{
    return 1;
}

void
ota_tls_session_free(struct ota_tls_session *session)
{
    if (session == NULL) {
        return;
    }
    SSL_free(session->ssl);
    OPENSSL_free(session->peer_der);
    free(session);
}

struct ota_tls_sha256 *
ota_tls_sha256_new(void)
{
    struct ota_tls_sha256 *context = calloc(1, sizeof(*context));
    if (context == NULL) {
        return NULL;
    }

    context->digest = EVP_MD_CTX_new();
    if (context->digest == NULL || EVP_DigestInit_ex(context->digest, EVP_sha256(), NULL) != 1) {
        ota_tls_sha256_free(context);
        return NULL;
    }
    return context;
}

int
ota_tls_sha256_update(struct ota_tls_sha256 *context, const void *data, size_t length)
{
    return EVP_DigestUpdate(context->digest, data, length) == 1 ? OTA_OK : OTA_ERR_INTERNAL;
}

int
ota_tls_sha256_final(struct ota_tls_sha256 *context, uint8_t digest[32])
{
    unsigned int length = 0;
    int ok = EVP_DigestFinal_ex(context->digest, digest, &length) == 1 && length == 32;
    return ok ? OTA_OK : OTA_ERR_INTERNAL;
}

void
ota_tls_sha256_free(struct ota_tls_sha256 *context)
{
    if (context == NULL) {
        return;
    }
    EVP_MD_CTX_free(context->digest);
    free(context);
}

/* "CN=device, O=Fleet": entries in encoded order, short names, UTF-8 values. */
static void
ota_openssl_subject(const X509_NAME *name, char *out, size_t out_size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int index = 0; index < X509_NAME_entry_count(name) && used < out_size; index++) {
        const X509_NAME_ENTRY *entry = X509_NAME_get_entry(name, index);
        int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry));
        unsigned char *value = NULL;
        if (ASN1_STRING_to_UTF8(&value, X509_NAME_ENTRY_get_data(entry)) < 0) {
            continue;
        }

        const char *short_name = nid != NID_undef ? OBJ_nid2sn(nid) : "?";
        int wrote = snprintf(out + used, out_size - used, "%s%s=%s", used > 0 ? ", " : "",
                             short_name, (const char *)value);
        OPENSSL_free(value);
        if (wrote < 0) {
            break;
        }
        used += (size_t)wrote;
    }
}

static int64_t
ota_openssl_time(const ASN1_TIME *moment)
{
    struct tm broken_down;
    memset(&broken_down, 0, sizeof(broken_down));
    if (moment == NULL || ASN1_TIME_to_tm(moment, &broken_down) != 1) {
        return 0;
    }
    return (int64_t)timegm(&broken_down);
}

/*
 * The devices' own rule (mbedTLS): the DNS names when the certificate has a subjectAltName
 * extension of any kind, the CN only when it has none. OpenSSL alone would fall back to the CN
 * whenever no DNS name is present.
 */
static int
ota_openssl_names_agent(X509 *certificate)
{
    int has_alt_names = X509_get_ext_by_NID(certificate, NID_subject_alt_name, -1) >= 0;
    unsigned int flags = has_alt_names ? X509_CHECK_FLAG_NEVER_CHECK_SUBJECT : 0;
    return X509_check_host(certificate, "ota-agent", 0, flags, NULL) == 1;
}

int
ota_tls_cert_inspect(const uint8_t *der, size_t length, ota_cert_info *info, char *detail,
                     size_t detail_size)
{
    ERR_clear_error();
    const unsigned char *cursor = der;
    X509 *certificate = d2i_X509(NULL, &cursor, (long)length);
    if (certificate == NULL || cursor != der + length) {
        X509_free(certificate);
        ota_openssl_detail(detail, detail_size, "not an X.509 certificate");
        return OTA_ERR_PROTOCOL;
    }

    ota_openssl_subject(X509_get_subject_name(certificate), info->subject,
                        sizeof(info->subject));
    info->not_before = ota_openssl_time(X509_get0_notBefore(certificate));
    info->not_after = ota_openssl_time(X509_get0_notAfter(certificate));
    info->has_ota_agent_name = ota_openssl_names_agent(certificate);
    X509_free(certificate);
    ERR_clear_error();

    return ota_sha256(der, length, info->sha256);
}

const char *
ota_tls_backend_name(void)
{
    return "openssl";
}

int
ota_tls_aes_gcm_reference(const unsigned char *key, size_t key_length, const unsigned char iv[12],
                          const unsigned char *aad, size_t aad_length, const unsigned char *input,
                          size_t length, unsigned char *output, unsigned char tag[16])
{
    if ((key_length != 16 && key_length != 32) || length > INT_MAX || aad_length > INT_MAX) {
        return OTA_ERR_USAGE;
    }
    EVP_CIPHER_CTX *context = EVP_CIPHER_CTX_new();
    if (context == NULL) {
        return OTA_ERR_MEMORY;
    }
    const EVP_CIPHER *cipher = key_length == 32 ? EVP_aes_256_gcm() : EVP_aes_128_gcm();
    int ignored = 0;
    int encrypted = 0;
    unsigned char final_block[EVP_MAX_BLOCK_LENGTH];
    int ok = EVP_EncryptInit_ex(context, cipher, NULL, key, iv) == 1;
    ok = ok && (aad_length == 0 ||
                EVP_EncryptUpdate(context, NULL, &ignored, aad, (int)aad_length) == 1);
    ok = ok && (length == 0 ||
                EVP_EncryptUpdate(context, output, &encrypted, input, (int)length) == 1);
    /* GCM is a stream mode: the final call writes no byte, only completes the tag. */
    ok = ok && EVP_EncryptFinal_ex(context, final_block, &ignored) == 1;
    ok = ok && EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    EVP_CIPHER_CTX_free(context);
    ERR_clear_error();
    return ok ? OTA_OK : OTA_ERR_INTERNAL;
}

void
ota_tls_thread_done(void)
{
    OPENSSL_thread_stop();
}

const char *
ota_tls_backend_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

uint16_t
ota_tls_backend_max_version(void)
{
    return OTA_TLS_POLICY_VERSION_1_3;
}

#endif /* OTA_BACKEND_OPENSSL */
