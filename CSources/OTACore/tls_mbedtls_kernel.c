/*
 * tls_mbedtls_kernel.c - the mbedTLS session's transmit keys handed to Linux kernel TLS.
 *
 * After the handshake the agent only sends: the image, then close_notify. So once the
 * kernel holds the server's write key, IV and the next record sequence number, sendfile(2)
 * can feed the file straight from the page cache and the kernel frames and encrypts each
 * record exactly as mbedTLS would have. Only TLS 1.2 AEAD suites qualify (AES-GCM-128/256 and
 * ChaCha20-Poly1305); anything else stays in user space, and the note says why.
 * Kernel interface: Documentation/networking/tls.rst, <linux/tls.h>.
 */

#ifdef OTA_BACKEND_MBEDTLS

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include <linux/tls.h>

#include <mbedtls/cipher.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/ssl_ciphersuites.h>

#include "ota_internal.h"
#include "tls_backend.h"
#include "tls_mbedtls_kernel.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

/* The key store of the session whose handshake runs on this thread, if any. */
static __thread struct ota_mbedtls_tx_keys *ota_mbedtls_capturing;

void
ota_mbedtls_capture_begin(struct ota_mbedtls_tx_keys *keys)
{
    ota_mbedtls_capturing = keys;
}

void
ota_mbedtls_capture_end(void)
{
    ota_mbedtls_capturing = NULL;
}

int
ota_mbedtls_export_keys(void *unused, const unsigned char *master, const unsigned char *block,
                        size_t mac_length, size_t key_length, size_t iv_length,
                        const unsigned char client_random[32],
                        const unsigned char server_random[32], mbedtls_tls_prf_types prf)
{
    (void)unused;
    (void)master;
    (void)client_random;
    (void)server_random;
    (void)prf;
    struct ota_mbedtls_tx_keys *keys = ota_mbedtls_capturing;
    if (keys == NULL || key_length > sizeof(keys->key) || iv_length > sizeof(keys->iv)) {
        return 0;
    }

    /* RFC 5246 6.3 key block: client MAC, server MAC, client key, server key, client IV,
     * server IV. The server writes with the second key and the second IV. */
    const unsigned char *server_key = block + 2 * mac_length + key_length;
    const unsigned char *server_iv = block + 2 * mac_length + 2 * key_length + iv_length;
    memcpy(keys->key, server_key, key_length);
    memcpy(keys->iv, server_iv, iv_length);
    keys->key_length = key_length;
    keys->iv_length = iv_length;
    keys->present = 1;
    return 0;
}

/* The cipher of the negotiated suite, or NONE. */
static mbedtls_cipher_type_t
ota_mbedtls_suite_cipher(const mbedtls_ssl_context *ssl, const char **name)
{
    int id = ssl->session != NULL ? ssl->session->ciphersuite : 0;
    const mbedtls_ssl_ciphersuite_t *suite = mbedtls_ssl_ciphersuite_from_id(id);
    *name = suite != NULL ? suite->name : "unknown";
    return suite != NULL ? suite->cipher : MBEDTLS_CIPHER_NONE;
}

/* The two AES-GCM layouts differ only in key size: one filler for both. */
static void
ota_mbedtls_fill_gcm(struct tls_crypto_info *header, unsigned short cipher_type,
                     unsigned char *key, unsigned char *salt, unsigned char *explicit_iv,
                     unsigned char *record_sequence, const struct ota_mbedtls_tx_keys *keys,
                     const unsigned char sequence[8])
{
    header->version = TLS_1_2_VERSION;
    header->cipher_type = cipher_type;
    memcpy(key, keys->key, keys->key_length);
    memcpy(salt, keys->iv, 4);
    memcpy(explicit_iv, sequence, 8);
    memcpy(record_sequence, sequence, 8);
}

/* Fills the kernel's crypto_info for the session's cipher; its size, or 0 if unsupported. */
static size_t
ota_mbedtls_crypto_info(mbedtls_cipher_type_t cipher, const struct ota_mbedtls_tx_keys *keys,
                        const unsigned char sequence[8], void *info_storage)
{
    if ((cipher == MBEDTLS_CIPHER_AES_128_GCM || cipher == MBEDTLS_CIPHER_AES_256_GCM) &&
        keys->iv_length == 4) {
        /* GCM: the 4-byte implicit salt; the 8-byte explicit nonce is the sequence number,
         * as mbedTLS sends it, and the kernel carries it forward record by record. */
        int wide = cipher == MBEDTLS_CIPHER_AES_256_GCM;
        if (keys->key_length != (wide ? 32u : 16u)) {
            return 0;
        }
        if (wide) {
            struct tls12_crypto_info_aes_gcm_256 *info = info_storage;
            ota_mbedtls_fill_gcm(&info->info, TLS_CIPHER_AES_GCM_256, info->key, info->salt,
                                 info->iv, info->rec_seq, keys, sequence);
            return sizeof(*info);
        }
        struct tls12_crypto_info_aes_gcm_128 *info = info_storage;
        ota_mbedtls_fill_gcm(&info->info, TLS_CIPHER_AES_GCM_128, info->key, info->salt, info->iv,
                             info->rec_seq, keys, sequence);
        return sizeof(*info);
    }
    if (cipher == MBEDTLS_CIPHER_CHACHA20_POLY1305 && keys->iv_length == 12 &&
        keys->key_length == 32) {
        /* ChaCha20-Poly1305 (RFC 7905): the 12-byte IV, XORed with the sequence number. */
        struct tls12_crypto_info_chacha20_poly1305 *info = info_storage;
        info->info.version = TLS_1_2_VERSION;
        info->info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
        memcpy(info->key, keys->key, 32);
        memcpy(info->iv, keys->iv, 12);
        memcpy(info->rec_seq, sequence, 8);
        return sizeof(*info);
    }
    return 0;
}

/* Why the session cannot go to the kernel, or NULL when it can try. */
static const char *
ota_mbedtls_disqualified(const mbedtls_ssl_context *ssl, const struct ota_mbedtls_tx_keys *keys)
{
    if (!keys->present) {
        return "no transmit keys were exported for this session";
    }
    if (mbedtls_ssl_get_output_max_frag_len(ssl) < 16384) {
        return "the device negotiated a smaller max_fragment_length";
    }
    if (ssl->out_left != 0) {
        return "mbedTLS still had output queued";
    }
    return NULL;
}

int
ota_mbedtls_kernel_handoff(mbedtls_ssl_context *ssl, int fd, struct ota_mbedtls_tx_keys *keys,
                           char *note, size_t note_size)
{
    union {
        struct tls12_crypto_info_aes_gcm_128 gcm128;
        struct tls12_crypto_info_aes_gcm_256 gcm256;
        struct tls12_crypto_info_chacha20_poly1305 chacha;
    } info;
    memset(&info, 0, sizeof(info));
    int installed = 0;

    const char *suite_name = "";
    mbedtls_cipher_type_t cipher = ota_mbedtls_suite_cipher(ssl, &suite_name);
    const char *reason = ota_mbedtls_disqualified(ssl, keys);
    size_t info_size = reason == NULL ? ota_mbedtls_crypto_info(cipher, keys, ssl->cur_out_ctr,
                                                               &info)
                                      : 0;
    if (reason != NULL) {
        ota_detail_set(note, note_size, "user-space encryption: %s", reason);
    } else if (info_size == 0) {
        ota_detail_set(note, note_size,
                       "user-space encryption: %s has no kernel TLS offload", suite_name);
    } else if (!ota_kernel_tls_worth_trying()) {
        /* No module, and another connection tried less than a minute ago. */
        ota_detail_set(note, note_size,
                       "user-space encryption: kernel TLS unavailable (no tls module)");
    } else if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) != 0) {
        /* ENOENT: the kernel has no "tls" upper layer protocol, i.e. no tls module. */
        ota_detail_set(note, note_size, "user-space encryption: kernel TLS unavailable (%s)",
                       errno == ENOENT ? "no tls module" : strerror(errno));
    } else if (setsockopt(fd, SOL_TLS, TLS_TX, &info, (socklen_t)info_size) != 0) {
        ota_detail_set(note, note_size, "user-space encryption: kernel refused %s (%s)",
                       suite_name, strerror(errno));
    } else {
        installed = 1;
        ota_detail_set(note, note_size, "kernel TLS: %s", suite_name);
    }

    mbedtls_platform_zeroize(&info, sizeof(info));
    /* Refused, the keys stay for the user-space sealer (tls_mbedtls_seal.c), which wipes them,
     * as does the session's end. */
    if (installed) {
        mbedtls_platform_zeroize(keys, sizeof(*keys));
    }
    return installed;
}

int
ota_mbedtls_kernel_close_notify(int fd, char *detail, size_t detail_size)
{
    /* A record of type alert (21): level warning (1), description close_notify (0). */
    unsigned char alert[2] = {1, 0};
    struct iovec payload = {.iov_base = alert, .iov_len = sizeof(alert)};
    union {
        char buffer[CMSG_SPACE(sizeof(unsigned char))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));

    struct msghdr message = {
        .msg_iov = &payload,
        .msg_iovlen = 1,
        .msg_control = control.buffer,
        .msg_controllen = sizeof(control.buffer),
    };
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_TLS;
    header->cmsg_type = TLS_SET_RECORD_TYPE;
    header->cmsg_len = CMSG_LEN(sizeof(unsigned char));
    *CMSG_DATA(header) = 21;

    ssize_t sent = sendmsg(fd, &message, MSG_NOSIGNAL);
    if (sent == (ssize_t)sizeof(alert)) {
        return OTA_TLS_DONE;
    }
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return OTA_TLS_WANT_WRITE;
    }
    ota_detail_set(detail, detail_size, "close_notify: sendmsg: %s",
                   sent < 0 ? strerror(errno) : "short write");
    return sent < 0 && (errno == EPIPE || errno == ECONNRESET) ? OTA_ERR_CLOSED : OTA_ERR_IO;
}

#endif /* OTA_BACKEND_MBEDTLS */
