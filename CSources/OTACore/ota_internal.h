/*
 * ota_internal.h - helpers shared by the core's files: details, deadlines, readiness waits.
 * Not installed; nothing here is part of the public API.
 */

#ifndef OTA_INTERNAL_H
#define OTA_INTERNAL_H

#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stddef.h>

#include "ota_core.h"

#if defined(OTA_BACKEND_OPENSSL) && defined(OTA_BACKEND_MBEDTLS)
#error "ota-agent: enable exactly one TLS backend trait, OpenSSL or MbedTLS, not both"
#endif
#if !defined(OTA_BACKEND_OPENSSL) && !defined(OTA_BACKEND_MBEDTLS)
#error "ota-agent: no TLS backend selected; enable the OpenSSL or the MbedTLS trait"
#endif

/* A certificate's public key kind, as TLS 1.2 suites name it (ECDHE-RSA-..., ECDHE-ECDSA-...). */
enum { OTA_KEY_OTHER = 0, OTA_KEY_RSA = 1, OTA_KEY_EC = 2 };

/* The key kind of a DER certificate, from its SubjectPublicKeyInfo (cert_identity.c). */
int ota_cert_key_kind(const uint8_t *der, size_t length);

/* Size of every detail buffer kept on a handle. */
#define OTA_DETAIL_SIZE 256

/* Formats into a caller's detail buffer; a NULL buffer or zero size is ignored. */
void ota_detail_set(char *detail, size_t detail_size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes a message through the log callback, if one is set. */
void ota_log(int level, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* Monotonic clock in milliseconds. */
int64_t ota_now_ms(void);

/* An absolute deadline from a relative timeout; a negative timeout means none (INT64_MAX). */
int64_t ota_deadline_after(int timeout_ms);

/*
 * Whether a new connection should try kernel TLS: always while the tls module is loaded.
 * Without it, every try costs the kernel a module request and the connection failing calls;
 * yet a try is how the kernel loads the module on demand (for a privileged process), so one
 * connection per OTA_KERNEL_TLS_RETRY_MS still tries. Any thread.
 */
#define OTA_KERNEL_TLS_RETRY_MS 60000
int ota_kernel_tls_worth_trying(void);

/* Whether the kernel has the tls module, as seen at most 100 ms ago. Any thread. */
int ota_kernel_tls_module_loaded(void);

/* Milliseconds left until `deadline`, clamped for poll(2): 0 when passed, -1 when none. */
int ota_deadline_remaining(int64_t deadline);

/* What a readiness wait is for. */
enum ota_wait {
    OTA_WAIT_READ = 1,
    OTA_WAIT_WRITE = 2,
};

/*
 * Waits until `fd` is ready for `what` or the earlier of the two deadlines passes, watching
 * the cancel source too. Returns OTA_OK, OTA_ERR_TIMEOUT, OTA_ERR_CANCELLED or OTA_ERR_IO.
 */
int ota_wait_fd(int fd, int what, int64_t deadline, int64_t second_deadline,
                const ota_cancel *cancel);

/* The cancel source's descriptor, or -1 for NULL. */
int ota_cancel_fd(const ota_cancel *cancel);

/* Resets a TCP connection: SO_LINGER {1, 0}, then close. */
void ota_socket_reset(int fd);

/* The backend credentials inside a server configuration (credentials.c). */
struct ota_tls_credentials;
const struct ota_tls_credentials *ota_server_config_credentials(const ota_server_config *config);

/* The image's descriptor, and an exact read by offset (image.c). */
int ota_image_fd(const ota_image *image);
int ota_image_read_at(const ota_image *image, uint8_t *buffer, size_t length, uint64_t offset);

/* SIGPIPE suppression around socket writes on the calling thread (sigpipe.c). */
struct ota_sigpipe_state {
    sigset_t old_mask;
    int was_pending;
    int skipped; /* SIGPIPE is ignored process-wide: nothing was changed */
};
int ota_sigpipe_ignored(void);
void ota_sigpipe_block(struct ota_sigpipe_state *state, int ignored);
void ota_sigpipe_restore(struct ota_sigpipe_state *state);

#endif /* OTA_INTERNAL_H */
