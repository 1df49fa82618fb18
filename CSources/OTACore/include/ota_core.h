/*
 * ota_core.h - the C core of ota-agent.
 *
 * A minimal TLS server for firmware delivery: a listener, one connection per device, the
 * framing of the device's DER attestation certificate, certificate inspection and the
 * streaming of an image file. The TLS backend (OpenSSL or mbedTLS) is chosen at build time
 * and never shows in this header.
 *
 * Installed by scripts/install as libotacore.a with this header and an ota-core.pc for
 * pkg-config; link with `cc tool.c $(pkg-config --cflags --libs ota-core)` (README, "Building
 * and embedding"). The library is plain C and needs no Swift runtime.
 *
 * Status codes
 * - Every function returning `int` (or `ota_status`) returns OTA_OK (0) on success or a
 *   negative ota_status whose category says whose fault it was: the device's (CLOSED, TIMEOUT,
 *   PROTOCOL), the environment's (IO, CONFIG, MEMORY, CHANGED), the caller's (USAGE: a NULL
 *   where a pointer is required, a size or value out of range; a bug, never caused by a peer),
 *   a cancellation the caller asked for (CANCELLED) or the TLS library's (INTERNAL). The one
 *   positive status, OTA_PENDING, comes only from ota_conn_handshake_advance and means "not
 *   finished yet, call again". The values are stable: new codes get new numbers below -10, so
 *   treat any negative value as a failure; ota_status_name names each ("unknown" for others).
 * - Details (the failing call, errno or TLS error text) never go to stderr. Constructors and
 *   connection-less calls write them to a caller's `detail` buffer: always NUL-terminated, cut
 *   short to `detail_size`, skipped when `detail` is NULL or `detail_size` 0. Calls on a
 *   connection keep them on the handle (ota_conn_detail). Key material is never in a detail.
 * - Constructors (`*_new`, `ota_image_open`) return NULL on failure and, where they take an
 *   `int *status`, set it (it may be NULL).
 *
 * Ownership and lifetimes
 * - Handles are opaque. The caller owns what `*_new` or `ota_image_open` returns until it
 *   passes it to the matching `*_free`, which accepts NULL; a handle is freed once, after every
 *   call using it (on any thread) has returned.
 * - Borrowed handles must outlive the borrower: a connection borrows its server configuration
 *   and cancel source for its whole life; ota_conn_send_image borrows the image for the call.
 * - Input strings and buffers are only read during the call; no path is kept.
 * - Returned strings: static storage where so documented (status and backend names, chip
 *   names, `*reason`); otherwise owned by the handle they came from and valid until it is
 *   freed, except ota_conn_detail and ota_conn_transfer_note, valid until the next call on
 *   that connection. Never free them.
 * - Sockets: ota_listener_accept hands the caller a descriptor; ota_conn_new and
 *   ota_listener_refuse take it over, in every case, success or not.
 *
 * Blocking and threads
 * - Every blocking call takes a timeout in milliseconds and waits on socket readiness with
 *   poll(2); none sleeps or spins. A negative timeout means "no deadline". The core starts no
 *   thread and installs no signal handler.
 * - Distinct handles may be used from distinct threads at once. One listener or connection is
 *   used by one thread at a time, except ota_listener_interrupt and ota_cancel_fire (and
 *   ota_cancel_is_fired), which any thread may call at any time. An ota_server_config and an
 *   ota_image are read-only once made: any number of connections may share them and use them
 *   from any threads at once (the agent sends one image to many devices concurrently).
 *   An ota_sha256_ctx is one thread's at a time.
 * - Functions without a handle (framing, PEM, identification, image format checks, hashing,
 *   inspection) keep no global state and may run on any thread at once. The exception is
 *   ota_set_log_callback: set it before any other call, or while no other thread is inside the
 *   core.
 * - A thread that ran connections calls ota_thread_done before it ends.
 * - SIGPIPE: the core never raises it; socket writes use MSG_NOSIGNAL or block the signal on
 *   the calling thread for the duration of the write.
 */

#ifndef OTA_CORE_H
#define OTA_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes ------------------------------------------------------------------------ */

typedef enum ota_status {
    OTA_PENDING = 1,        /* not finished, no failure: call again when the peer sent more */
    OTA_OK = 0,
    OTA_ERR_CLOSED = -1,    /* the peer closed or reset the connection */
    OTA_ERR_TIMEOUT = -2,   /* a deadline passed */
    OTA_ERR_PROTOCOL = -3,  /* the peer broke TLS or the attestation framing */
    OTA_ERR_IO = -4,        /* a socket or file call failed (errno in the detail) */
    OTA_ERR_USAGE = -5,     /* the caller passed something invalid */
    OTA_ERR_CONFIG = -6,    /* a certificate, key or address is unusable */
    OTA_ERR_MEMORY = -7,    /* an allocation failed */
    OTA_ERR_CHANGED = -8,   /* the image file changed while it was being served */
    OTA_ERR_CANCELLED = -9, /* the operation was cancelled through an ota_cancel */
    OTA_ERR_INTERNAL = -10, /* a TLS library call failed in an unexpected way */
} ota_status;

/* A stable lower-case name for a status ("ok", "closed", "timeout", ...; "unknown" for a value
 * that is not an ota_status). Static storage, never NULL. Any thread. */
const char *ota_status_name(int status);

/* The TLS backend compiled in: "openssl" or "mbedtls". Static storage. */
const char *ota_backend_name(void);

/* The backend library's version text, e.g. "OpenSSL 3.0.19 ...". Static storage. */
const char *ota_backend_version(void);

/*
 * 1 when the backend asks devices for a TLS client certificate and so lets them prove, by the
 * handshake's CertificateVerify, that they hold its private key (the OpenSSL backend); 0 when
 * it never asks (the mbedTLS backend: mbedTLS 2.28 cannot accept a DICE certificate as a
 * client certificate). See ota_conn_peer_certificate.
 */
int ota_backend_supports_proof(void);

/*
 * Frees what the TLS library keeps for the calling thread (OpenSSL's per-thread random and
 * error state). Call it at the end of a thread that ran connections, before the thread tells
 * others it is done: the process may then exit, and the library's clean-up at exit must not
 * meet a thread still inside it. Harmless to call more than once.
 */
void ota_thread_done(void);

/*
 * Gives the heap's free pages back to the system (glibc's malloc_trim). After a burst of
 * connections, freed memory otherwise stays in the process, in every thread's arena; a
 * long-running server calls this once it has gone idle. Costs a walk of the heap: not per
 * connection. Does nothing where the C library has no such call.
 */
void ota_heap_trim(void);

/* ---- logging ------------------------------------------------------------------------------ */

typedef enum ota_log_level {
    OTA_LOG_DEBUG = 0,
    OTA_LOG_INFO = 1,
    OTA_LOG_WARNING = 2,
    OTA_LOG_ERROR = 3,
} ota_log_level;

/*
 * Receives the core's own log messages (rare: the core reports through return values).
 * `message` is valid only during the call. The callback may run on any thread that calls
 * into the core, so it must be thread-safe, and must not call back into the core. Set it once,
 * before other calls (it is a plain process-wide setting, not synchronized); `context` must
 * stay valid while it is set. A NULL callback turns logging off (the default).
 */
typedef void (*ota_log_fn)(void *context, int level, const char *message);
void ota_set_log_callback(ota_log_fn callback, void *context);

/* ---- attestation certificate framing (pure functions, no I/O) ------------------------------ */

/* The largest attestation certificate accepted, header included. */
#define OTA_DER_MAX_LENGTH 16384

typedef enum ota_der_state {
    OTA_DER_COMPLETE = 0,  /* one certificate of `*total` bytes starts the buffer */
    OTA_DER_NEED_MORE = 1, /* at least `*total` bytes are needed before deciding */
    OTA_DER_INVALID = -1,  /* not one well-formed DER SEQUENCE; `*reason` says why */
} ota_der_state;

/*
 * Frames one DER SEQUENCE at the start of `bytes`: tag 0x30, definite length in short form or
 * long form with one or two minimal length bytes, total at most `max_total` bytes (itself at
 * most OTA_DER_MAX_LENGTH). Only the outer header is checked; the contents are the verifier's.
 * `*reason` (may be NULL) receives a static string for OTA_DER_INVALID.
 */
ota_der_state ota_der_frame(const uint8_t *bytes, size_t length, size_t max_total,
                            size_t *total, const char **reason);

/* Bytes needed for the PEM form of `der_length` bytes, terminating NUL included; 0 for inputs
 * over 1 GiB, which ota_der_to_pem refuses. */
size_t ota_pem_length(size_t der_length);

/*
 * Writes the standard PEM form of a certificate: "-----BEGIN CERTIFICATE-----", base64 in
 * 64-column lines, LF line ends, trailing newline, then a NUL. `*pem_length` receives the
 * length without the NUL. Fails with OTA_ERR_USAGE when `capacity` is too small.
 */
int ota_der_to_pem(const uint8_t *der, size_t der_length, char *pem, size_t capacity,
                   size_t *pem_length);

/* ---- certificate inspection and hashing (through the backend library) ---------------------- */

/*
 * A certificate's subject is untrusted text: whoever made the certificate chose it, and for a
 * device's attestation certificate that is the device. Its string attributes are copied byte
 * for byte (only a NUL becomes '?'), so a subject may hold LF, CR, ESC, BEL, DEL, C1 bytes
 * and invalid UTF-8: printed or logged raw it can forge log lines or drive a terminal (escape
 * sequences). Escape it before printing or logging, e.g. every byte outside 0x20..0x7e as
 * \xNN, as examples/c/serve_one.c does (the ota-agent tool's own logs escape it too).
 */
typedef struct ota_cert_info {
    char subject[256];  /* one-line subject, e.g. "CN=esp32-device-0001, O=Fleet"; untrusted
                           text, to escape before printing (above) */
    uint8_t sha256[32]; /* SHA-256 of the DER encoding: the certificate's fingerprint */
    int64_t not_before; /* validity, seconds since the epoch (UTC) */
    int64_t not_after;
    int has_ota_agent_name; /* 1 when a device would accept the name "ota-agent": a DNS SAN
                               when there is a subjectAltName, else the CN */
} ota_cert_info;

/*
 * Inspects one DER certificate. Unknown critical extensions are tolerated: DICE certificates
 * carry one. Returns OTA_ERR_PROTOCOL when the bytes are not a parseable certificate.
 */
int ota_cert_inspect(const uint8_t *der, size_t length, ota_cert_info *info, char *detail,
                     size_t detail_size);

/* Who a certificate names, read from its DER alone (no TLS library involved). */
typedef struct ota_cert_identity {
    char subject[256];  /* as in ota_cert_info (untrusted, device-controlled text: escape it
                           before printing or logging); cut short (still NUL-terminated) if
                           longer */
    uint8_t sha256[32]; /* SHA-256 of the DER encoding: the certificate's fingerprint */
    int64_t not_before; /* validity, seconds since the epoch (UTC) */
    int64_t not_after;
} ota_cert_identity;

/*
 * The subject, validity and fingerprint of one DER certificate, found by walking its
 * structure: far cheaper than ota_cert_inspect (no key is decoded) and the same text on both
 * backends. Checks only the structure it walks; says nothing about signatures or extensions.
 * Returns OTA_ERR_PROTOCOL when the bytes are not one whole certificate; the fingerprint of
 * the bytes is filled in all the same (the other fields are then empty). Thread-safe.
 */
int ota_cert_identify(const uint8_t *der, size_t length, ota_cert_identity *identity);

/* SHA-256 of a buffer: OTA_OK, OTA_ERR_MEMORY, or OTA_ERR_USAGE for a NULL `digest` or a
 * NULL `data` with a non-zero length. */
int ota_sha256(const void *data, size_t length, uint8_t digest[32]);

/* Incremental SHA-256, for hashing an image without holding it. `_new` returns NULL when out
 * of memory; `_update` and `_final` return OTA_ERR_USAGE for a NULL context or buffer. After
 * `_final` the context only needs `_free`. */
typedef struct ota_sha256_ctx ota_sha256_ctx;
ota_sha256_ctx *ota_sha256_new(void);
int ota_sha256_update(ota_sha256_ctx *context, const void *data, size_t length);
int ota_sha256_final(ota_sha256_ctx *context, uint8_t digest[32]);
void ota_sha256_free(ota_sha256_ctx *context);

/* ---- cancellation -------------------------------------------------------------------------- */

/*
 * A cancellation source shared by any number of listeners and connections (one eventfd).
 * Once fired, every blocking call that was given it returns OTA_ERR_CANCELLED promptly, and so
 * does every later one; it cannot be reset. Firing is thread-safe and async-signal-safe;
 * ota_cancel_is_fired may be called from any thread. `_new` returns NULL when no memory or
 * no eventfd could be had. Free it only once no handle that borrows it is in use.
 */
typedef struct ota_cancel ota_cancel;
ota_cancel *ota_cancel_new(void);
void ota_cancel_fire(ota_cancel *cancel);
int ota_cancel_is_fired(const ota_cancel *cancel);

/* Waits up to `timeout_ms` for the cancel source: OTA_ERR_CANCELLED if it fired, else
 * OTA_ERR_TIMEOUT. A cancellable sleep, for back-off between retries. */
int ota_cancel_wait(const ota_cancel *cancel, int timeout_ms);
void ota_cancel_free(ota_cancel *cancel);

/* ---- server configuration: certificate and key --------------------------------------------- */

typedef struct ota_server_config ota_server_config;

/*
 * Loads the server certificate (PEM) and private key (PEM) and checks that they match.
 * RSA and ECDSA P-256 keys work. TLS 1.2 at least (what the field devices speak); TLS 1.3
 * too where the backend has it. The default TLS policy (see ota_server_config_new_with_policy).
 * On failure returns NULL, sets `*status` (OTA_ERR_CONFIG or OTA_ERR_IO) and writes a message
 * naming the file and the cause to `detail`. The message starts with "certificate: ",
 * "private key: " or "certificate and key: " (a mismatch), saying which input is at fault.
 * Key material never appears in any message.
 */
ota_server_config *ota_server_config_new(const char *certificate_path, const char *key_path,
                                         int *status, char *detail, size_t detail_size);

/* TLS protocol versions, as on the wire, for ota_server_config_new_with_policy. */
#define OTA_TLS_1_2 0x0303
#define OTA_TLS_1_3 0x0304

/*
 * Like ota_server_config_new, with a TLS policy stricter than the default. The default
 * (`ciphers` NULL or "", `min_version` 0) is TLS 1.2 and 1.3, ECDHE key exchange with AES-GCM
 * or ChaCha20-Poly1305, AES-GCM first, in this order:
 *   ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-RSA-AES128-GCM-SHA256 ECDHE-ECDSA-AES256-GCM-SHA384
 *   ECDHE-RSA-AES256-GCM-SHA384 ECDHE-ECDSA-CHACHA20-POLY1305 ECDHE-RSA-CHACHA20-POLY1305
 *   TLS_AES_128_GCM_SHA256 TLS_AES_256_GCM_SHA384 TLS_CHACHA20_POLY1305_SHA256 (TLS 1.3)
 * Groups X25519, P-256, P-384; no renegotiation, compression, session tickets or resumption.
 *
 * `ciphers`: suite names separated by ':' or ',' (spaces ignored), the server's preference in
 * the order given. Each name is the OpenSSL name above or the IANA name
 * ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), whatever the backend; case is ignored and '-'
 * equals '_' (so mbedTLS's names work too). Only suites of the default list may be named:
 * anything else (a non-ECDHE or non-AEAD suite, CCM, OpenSSL keywords such as "HIGH", an
 * unknown name) fails with OTA_ERR_CONFIG. The list can narrow the policy, never widen it.
 * TLS 1.3 suites are skipped on a backend without TLS 1.3, TLS 1.2 suites when `min_version`
 * is 1.3. A list left with no suite, or with no TLS 1.2 suite while TLS 1.2 is allowed (the
 * field devices would be locked out), fails with OTA_ERR_CONFIG.
 * `min_version`: 0 or OTA_TLS_1_2 (the default), or OTA_TLS_1_3; another value is
 * OTA_ERR_USAGE. OTA_TLS_1_3 locks out every TLS 1.2-only device (today's whole fleet), and
 * the mbedTLS backend (2.28, no TLS 1.3) refuses it with OTA_ERR_CONFIG.
 * Policy failures write a detail starting with "tls ciphers: " or "tls min version: " and are
 * reported before the files are read. Both strings are only read during the call.
 */
ota_server_config *ota_server_config_new_with_policy(const char *certificate_path,
                                                     const char *key_path, const char *ciphers,
                                                     int min_version, int *status, char *detail,
                                                     size_t detail_size);

/* The suites in effect, OpenSSL names joined by ':' in preference order, only those the
 * backend and minimum version can negotiate. Owned by `config`; "" for NULL. */
const char *ota_server_config_ciphers(const ota_server_config *config);

/* The minimum protocol version in effect: OTA_TLS_1_2 or OTA_TLS_1_3; 0 for NULL. */
int ota_server_config_min_version(const ota_server_config *config);

/* The server certificate's identity and dates, for start-up checks. */
int ota_server_config_certificate(const ota_server_config *config, ota_cert_info *info);

void ota_server_config_free(ota_server_config *config);

/*
 * Whether the certificate (PEM, first in the file) and the private key (PEM) at these paths
 * belong together, as this build's TLS library reads them: OTA_OK with `*matches` 1 or 0 (the
 * detail then names both paths), or a failure status when one of them could not be read or is
 * of a kind the library does not serve with (detail says which). Neither file's contents appear
 * in the detail. For a client certificate handed to another library (curl's, for Dice-Auth),
 * treat only `*matches` 0 as a definite mismatch.
 */
int ota_key_pair_check(const char *certificate_path, const char *key_path, int *matches,
                       char *detail, size_t detail_size);

/* ---- listener ------------------------------------------------------------------------------ */

typedef struct ota_listener ota_listener;

/*
 * Binds and listens. `bind_address` NULL or "" means every address, IPv6 and IPv4 (a
 * dual-stack socket, or IPv4 alone on hosts without IPv6); otherwise a numeric address (no
 * name lookup). Port 0 binds an ephemeral port; `backlog` 0 or less means 128. On failure
 * returns NULL with `*status` OTA_ERR_CONFIG (not a numeric address, or a socket, bind or
 * listen call failed: a port in use, a privileged port) or OTA_ERR_MEMORY, and a message
 * naming the address and errno text.
 */
ota_listener *ota_listener_new(const char *bind_address, uint16_t port, int backlog,
                               int *status, char *detail, size_t detail_size);

/* The bound port and address (numeric; "::" for the dual-stack wildcard). The address is
 * owned by the listener, valid until ota_listener_free. */
uint16_t ota_listener_port(const ota_listener *listener);
const char *ota_listener_address(const ota_listener *listener);

/*
 * Waits for one connection. On OTA_OK `*client_fd` is a new non-blocking socket owned by the
 * caller (pass it to ota_conn_new or ota_listener_refuse, or close it) and `peer` holds its
 * numeric address (IPv4-mapped IPv6 shown as plain IPv4; 64 bytes hold any); `peer_port` may
 * be NULL. Returns OTA_ERR_TIMEOUT, OTA_ERR_CANCELLED (cancel fired, listener interrupted or
 * closed), OTA_ERR_IO (`peer` then holds the detail, "accept: <errno text>"), or
 * OTA_ERR_USAGE for a NULL `listener`, `client_fd` or `peer`, or a zero `peer_size`.
 */
int ota_listener_accept(ota_listener *listener, int timeout_ms, const ota_cancel *cancel,
                        int *client_fd, char *peer, size_t peer_size, uint16_t *peer_port);

/*
 * Waits until a connection is waiting to be accepted, without taking it: OTA_OK, or
 * OTA_ERR_TIMEOUT, OTA_ERR_CANCELLED or OTA_ERR_IO as for accept. A server that must close an
 * idle connection to make room for a new one can first learn that a new one is there.
 */
int ota_listener_wait_connection(ota_listener *listener, int timeout_ms, const ota_cancel *cancel);

/* Makes a blocked and every later accept or wait return OTA_ERR_CANCELLED. Any thread. */
void ota_listener_interrupt(ota_listener *listener);

/*
 * Closes an accepted socket with a TCP reset instead of serving it, so the client learns at
 * once that it was turned away (a device treats a plain close after data as a complete image;
 * a reset is always an error). Takes ownership of `fd`.
 */
void ota_listener_refuse(int fd);

/*
 * Closes the listening socket now, so that new connections are refused rather than left
 * waiting in the queue; the handle stays valid and every later accept returns
 * OTA_ERR_CANCELLED. Call it from the thread that accepts, once it has stopped accepting.
 */
void ota_listener_close(ota_listener *listener);

/* Closes the socket if still open, and frees the handle. To stop a thread blocked in accept,
 * call ota_listener_interrupt and wait for that thread to return first. */
void ota_listener_free(ota_listener *listener);

/* ---- image --------------------------------------------------------------------------------- */

typedef struct ota_image ota_image;

/*
 * Opens the image once, read-only, and records its size and mtime. Every transfer reads
 * it by offset (never the shared file position, never a mapping), so one image may be sent by
 * any number of connections on any threads at once; it must outlive every transfer using it.
 * Refuses a path that cannot be opened or is not a regular file with OTA_ERR_CONFIG, NULL or
 * "" with OTA_ERR_USAGE (OTA_ERR_IO when fstat fails). An empty file is accepted: its transfer
 * sends no byte and ends cleanly (the agent itself refuses empty images at start).
 */
ota_image *ota_image_open(const char *path, int *status, char *detail, size_t detail_size);
uint64_t ota_image_size(const ota_image *image);

/*
 * OTA_OK when the opened file's size and mtime still equal those seen at open, else
 * OTA_ERR_CHANGED. A file renamed over the path, or the path deleted, is no change: the open
 * image keeps its bytes (see ota_image_path_names_image).
 */
int ota_image_check_unchanged(const ota_image *image);

/* 1 when `path` still names the file opened there (not the private copy, if one was made); 0
 * once it was replaced, deleted or is unreadable. */
int ota_image_path_names_image(const ota_image *image, const char *path);

/*
 * Copies the image into a private, unnamed file (O_TMPFILE) in `directory` and serves that
 * from now on: whatever then happens to the file at the image's path (rewritten in place,
 * truncated, replaced, deleted), every device gets the bytes copied here, and what a caller
 * hashes and checks after this call is exactly what is served. The kernel copies (sharing
 * blocks where the filesystem can, as btrfs and xfs do); the copy costs the image's size on
 * that filesystem otherwise, and vanishes with the handle. On failure (a directory that
 * takes no such file, no space, the image written to meanwhile) the image is unchanged and
 * still usable as opened; the detail says why.
 */
int ota_image_make_private(ota_image *image, const char *directory, char *detail,
                           size_t detail_size);

/* SHA-256 of the image as it is on disk now (read by offset in fixed-size blocks). */
int ota_image_sha256(const ota_image *image, uint8_t digest[32]);

void ota_image_free(ota_image *image);

/* ---- ESP-IDF application image format ------------------------------------------------------ */

/* Largest segment count an ESP-IDF bootloader loads. */
#define OTA_APP_IMAGE_MAX_SEGMENTS 16

/* What a valid ESP-IDF app image says about itself. Strings are NUL-terminated; bytes outside
 * printable ASCII are shown as '?', so the fields are safe to log. */
typedef struct ota_app_image_info {
    uint16_t chip_id;         /* the extended header's chip id, e.g. 9 */
    const char *chip_name;    /* e.g. "ESP32-S3" (static storage) */
    uint16_t min_chip_revision; /* major * 100 + minor, e.g. 3 for v0.3 */
    uint16_t max_chip_revision;
    uint8_t segment_count;
    uint8_t spi_mode;         /* 0 QIO, 1 QOUT, 2 DIO, 3 DOUT */
    uint8_t spi_size;         /* 0 = 1 MB ... 7 = 128 MB */
    uint8_t spi_speed;        /* the chip's frequency code */
    uint32_t entry_point;
    uint8_t checksum;         /* the checksum byte, equal to what the segments give */
    int hash_appended;        /* 1 when a SHA-256 of the image follows the checksum byte */
    uint8_t appended_sha256[32]; /* that SHA-256 (zeros when none) */
    uint64_t image_length;    /* header to checksum byte, plus 32 with the appended SHA-256 */
    uint64_t trailing_bytes;  /* file bytes after the image (a signature block, for one) */
    uint32_t secure_version;  /* from the application description, as the rest below */
    char project_name[33];
    char version[33];
    char idf_version[33];
    char compile_date[17];
    char compile_time[17];
} ota_app_image_info;

/*
 * Reads `length` bytes at `offset` into `buffer`, all of them: OTA_OK, or a negative status
 * (a short source is the source's error, e.g. OTA_ERR_CHANGED for a file that shrank).
 */
typedef int (*ota_app_image_read_fn)(void *context, uint64_t offset, uint8_t *buffer,
                                     size_t length);

/*
 * Checks that the `size` bytes behind `read` are an ESP-IDF application image: magic 0xE9,
 * 1 to 16 segments, SPI mode, size and frequency codes, a non-zero entry point, an ESP32 family
 * chip id, the hash-appended flag 0 or 1; every segment whole within the file, its length a
 * multiple of 4; the checksum byte (0xEF XOR every segment byte, the last byte of the image's
 * 16-byte padding); the appended SHA-256 when the flag says there is one (over every byte
 * before it); the application description (esp_app_desc_t, magic 0xABCD5432) at the start of
 * the first segment's data, which loads in the chip's flash-mapped data range (DROM), as
 * ESP-IDF links it. Bytes after the image are allowed (signature blocks follow it).
 *
 * The source is read front to back once, in blocks of at most 4 KiB, never held whole: images
 * may be far larger than memory allows. Pure apart from `read`: no I/O, no globals, so it is
 * safe from any thread and fuzzable over a buffer.
 *
 * Returns OTA_OK and fills `*info` (may be NULL); OTA_ERR_CONFIG when the bytes are not a
 * valid image, with the first defect found in `detail` (e.g. "checksum byte is 0x12, segments
 * give 0x34"); `read`'s own status when it fails; OTA_ERR_USAGE for a NULL `read`;
 * OTA_ERR_MEMORY when no SHA-256 context could be had. `*info` is zeroed on failure.
 */
int ota_app_image_check(ota_app_image_read_fn read, void *context, uint64_t size,
                        ota_app_image_info *info, char *detail, size_t detail_size);

/* The same over bytes in memory (tests, fuzzing). */
int ota_app_image_check_bytes(const uint8_t *bytes, size_t length, ota_app_image_info *info,
                              char *detail, size_t detail_size);

/* The same over an open image, read by offset as transfers read it. */
int ota_image_check_app_format(const ota_image *image, ota_app_image_info *info, char *detail,
                               size_t detail_size);

/* The chip name of an image chip id ("ESP32-C6"), or NULL for an id outside the family. */
const char *ota_app_image_chip_name(uint16_t chip_id);

/* ---- connection ---------------------------------------------------------------------------- */

typedef struct ota_conn ota_conn;

/*
 * Wraps an accepted socket for one device. Takes ownership of `fd` (also on failure: it is
 * then closed with a reset). `cancel` may be NULL; it must outlive the connection.
 * `config` must outlive the connection. Returns NULL for a NULL `config` or a negative `fd`,
 * when out of memory, or when the TLS library cannot make a session (no detail is kept then:
 * there is no handle to keep it on). Does no I/O.
 */
ota_conn *ota_conn_new(const ota_server_config *config, int fd, const ota_cancel *cancel);

/*
 * Waits, within `timeout_ms`, until the device has sent more bytes (its ClientHello first,
 * then its answer to the server's flight) or closed. Costs nothing but a poll.
 */
int ota_conn_wait_input(ota_conn *conn, int timeout_ms);

/*
 * Runs the handshake as far as the bytes already received allow: OTA_OK once it is complete,
 * OTA_PENDING when it needs the device's next bytes (wait with ota_conn_wait_input, then call
 * again), or a failure. Only a full socket buffer is waited for, within `timeout_ms`.
 *
 * Split this way, a server can bound the handshakes that compute at once without letting a
 * device that stalls between its flights hold one of those places; ota_conn_handshake below
 * is the whole handshake in one call.
 */
int ota_conn_handshake_advance(ota_conn *conn, int timeout_ms);

/*
 * 1 while the device has not yet delivered its whole ClientHello (bytes it sends at once), 0
 * once the server has answered it (the device is then computing its key exchange).
 */
int ota_conn_handshake_awaits_hello(const ota_conn *conn);

/* The TLS handshake, within `timeout_ms`. */
int ota_conn_handshake(ota_conn *conn, int timeout_ms);

/* The negotiated protocol and cipher suite names, after the handshake ("" before). Owned by
 * `conn`, valid until ota_conn_free. */
const char *ota_conn_protocol(const ota_conn *conn);
const char *ota_conn_cipher(const ota_conn *conn);

/*
 * The certificate the device presented as its TLS client certificate, DER, after the
 * handshake. Where the backend asks for one (ota_backend_supports_proof) every device is
 * asked, optionally: a device that presents one has proved, by the handshake itself, that it
 * holds the certificate's private key. The certificate itself is not validated by the TLS
 * layer: an unknown issuer, an unknown critical extension (DICE certificates carry one), key
 * usage keyCertSign only and validity dates are let through for Dice-Auth to judge; a broken
 * signature chain or any other verification error fails the handshake. The caller must still
 * check that it is the certificate the device sends as data, byte for byte.
 * On OTA_OK `*der` points to `*length` bytes owned by `conn`, valid until ota_conn_free; both
 * are NULL and 0 when the device presented none, before the handshake, and always on a backend
 * that does not ask. OTA_ERR_USAGE for a NULL argument, OTA_ERR_INTERNAL when the library
 * cannot encode it. Same thread rules as the other calls on `conn`.
 */
int ota_conn_peer_certificate(const ota_conn *conn, const uint8_t **der, size_t *length);

/*
 * Reads exactly one DER attestation certificate, framed by its ASN.1 length header, into
 * `buffer` (at least `max_length` bytes, itself at most OTA_DER_MAX_LENGTH), within
 * `timeout_ms` in all. OTA_ERR_PROTOCOL when the bytes are not one well-formed certificate or
 * anything follows it; OTA_ERR_CLOSED when the device ends the connection first.
 */
int ota_conn_read_certificate(ota_conn *conn, uint8_t *buffer, size_t max_length,
                              size_t *length, int timeout_ms);

/*
 * Checks, without waiting, that the device has sent nothing since its certificate: the
 * protocol has it only read from then on. OTA_OK when nothing arrived, OTA_ERR_PROTOCOL when
 * bytes did, OTA_ERR_CLOSED when it closed. ota_conn_read_certificate makes the same check
 * at once; calling this again just before the transfer catches bytes sent later.
 */
int ota_conn_check_idle(ota_conn *conn);

/* Called after each block is handed to TLS, on the transferring thread. */
typedef void (*ota_progress_fn)(void *context, uint64_t bytes_sent, uint64_t bytes_total);

typedef struct ota_transfer_limits {
    int stall_timeout_ms; /* longest wait for the device to accept more bytes */
    int total_timeout_ms; /* the whole transfer */
} ota_transfer_limits;

/*
 * Sends the whole image, byte for byte, then checks that the file did not change since it
 * was opened. Does not end the session: on OTA_OK call ota_conn_finish, on anything else
 * ota_conn_abort. `*bytes_sent` (may be NULL) counts image bytes handed to TLS.
 */
int ota_conn_send_image(ota_conn *conn, const ota_image *image, const ota_transfer_limits *limits,
                        ota_progress_fn progress, void *progress_context, uint64_t *bytes_sent);

/*
 * The streaming path the last transfer used: "ktls-sendfile" (the kernel encrypts, sendfile(2)
 * reads the page cache, no user-space copy) or "pread" (reads by offset into one 16 KiB
 * buffer, encrypted by the TLS library). "" before any transfer. Static storage.
 */
const char *ota_conn_transfer_path(const ota_conn *conn);

/* Why the last transfer took its path, e.g. "kernel TLS: ECDHE-RSA-AES128-GCM-SHA256" or
 * "user-space encryption: kernel TLS unavailable (no tls module)". Owned by `conn`, valid
 * until the next transfer on it or ota_conn_free. */
const char *ota_conn_transfer_note(const ota_conn *conn);

/*
 * Ends a complete transfer: close_notify, shutdown(SHUT_WR), then waits for the device to
 * confirm by closing its side. The image may still sit in socket buffers when the last write
 * returns, so while the device keeps acknowledging bytes the wait goes on (the transfer's stall
 * deadline restarts at each progress, its whole deadline still holds); once every byte is
 * acknowledged the device has `wait_ms` to close (it may still be reading its own buffers).
 * OTA_OK only when it closed. A reset, a stall, no close in time or a deadline returns an
 * error, and the connection has then been reset (as by ota_conn_abort).
 */
int ota_conn_finish(ota_conn *conn, int wait_ms);

/* Refuses a device that sent no firmware byte: close_notify, then close. */
int ota_conn_refuse(ota_conn *conn);

/*
 * Ends an incomplete transfer so the device sees an error, never a clean end: a TCP reset
 * (SO_LINGER {1, 0}, then close), no close_notify and no FIN.
 */
void ota_conn_abort(ota_conn *conn);

/* Text about the last failure on this connection: the failing call and its error ("" when
 * none yet, and for NULL). Owned by `conn`; the next call on `conn` may overwrite it, so copy
 * it first if it must last. */
const char *ota_conn_detail(const ota_conn *conn);

/* Frees the connection. A socket still open is reset, as by ota_conn_abort. */
void ota_conn_free(ota_conn *conn);

#ifdef __cplusplus
}
#endif

#endif /* OTA_CORE_H */
