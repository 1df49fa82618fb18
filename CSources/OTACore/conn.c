/*
 * conn.c - one device's session: handshake, attestation certificate, image, ending.
 *
 * The backend only ever says "done", "want read" or "want write"; this file owns the waiting,
 * and every wait has a deadline and watches the cancel source. How a session ends is the part
 * the field devices are sensitive to: their TLS read reports close_notify and a plain FIN
 * alike as "image complete", so only a finished transfer may end with either; anything else
 * ends with a reset.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ota_internal.h"
#include "tls_backend.h"

/* The plaintext block size for transfers: one full TLS record. */
#define OTA_TRANSFER_BLOCK 16384

/* How long a refusal may spend writing its close_notify. */
#define OTA_REFUSE_WRITE_MS 1000

/* The most the agent discards while waiting for the device to close. */
#define OTA_FINISH_DRAIN_LIMIT (1024 * 1024)

/* The most one sendfile(2) call is asked for, so progress and deadlines stay responsive. */
#define OTA_SENDFILE_SLICE (1024 * 1024)

/* A caller's progress callback and its context. */
struct ota_progress {
    ota_progress_fn callback;
    void *context;
};

/* How often the final phase looks at the send queue while bytes are unacknowledged. */
#define OTA_ACK_POLL_MS 100

struct ota_conn {
    int fd;
    const ota_cancel *cancel;
    struct ota_tls_session *session;
    uint8_t *transfer_buffer;
    const char *transfer_path;
    char transfer_note[256];   /* why the transfer took its path, and who encrypts */
    int stall_timeout_ms;      /* from the last transfer's limits, for the final phase */
    int64_t transfer_deadline; /* the last transfer's whole deadline (INT64_MAX: none) */
    int sigpipe_ignored;       /* SIGPIPE was ignored process-wide when the connection came */
    char detail[OTA_DETAIL_SIZE];
};

ota_conn *
ota_conn_new(const ota_server_config *config, int fd, const ota_cancel *cancel)
{
    if (config == NULL || fd < 0) {
        ota_socket_reset(fd);
        return NULL;
    }

    ota_conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        ota_socket_reset(fd);
        return NULL;
    }
    conn->fd = fd;
    conn->cancel = cancel;
    conn->transfer_path = "";
    conn->stall_timeout_ms = -1;
    conn->transfer_deadline = INT64_MAX;
    conn->sigpipe_ignored = ota_sigpipe_ignored();

    conn->session = ota_tls_session_new(ota_server_config_credentials(config), fd, conn->detail,
                                        sizeof(conn->detail));
    if (conn->session == NULL) {
        ota_conn_free(conn);
        return NULL;
    }
    return conn;
}

/* Describes why a wait ended, naming the phase. */
static int
ota_conn_wait_failed(ota_conn *conn, int status, const char *phase)
{
    if (status == OTA_ERR_TIMEOUT) {
        ota_detail_set(conn->detail, sizeof(conn->detail), "%s: deadline passed", phase);
    } else if (status == OTA_ERR_CANCELLED) {
        ota_detail_set(conn->detail, sizeof(conn->detail), "%s: cancelled", phase);
    } else {
        ota_detail_set(conn->detail, sizeof(conn->detail), "%s: poll: %s", phase,
                       strerror(errno));
    }
    return status;
}

/* Turns a backend WANT into a readiness wait; returns OTA_OK when the call should be retried. */
static int
ota_conn_wait_for(ota_conn *conn, int want, int64_t deadline, int64_t second_deadline,
                  const char *phase)
{
    int what = want == OTA_TLS_WANT_WRITE ? OTA_WAIT_WRITE : OTA_WAIT_READ;
    int status = ota_wait_fd(conn->fd, what, deadline, second_deadline, conn->cancel);
    if (status != OTA_OK) {
        return ota_conn_wait_failed(conn, status, phase);
    }
    return OTA_OK;
}

/* One non-blocking backend step: OTA_TLS_DONE, a WANT, or a negative status. */
typedef int (*ota_conn_step)(ota_conn *conn, void *argument);

/* Runs one backend step with SIGPIPE held off (see sigpipe.c). */
static int
ota_conn_step_once(ota_conn *conn, ota_conn_step step, void *argument)
{
    struct ota_sigpipe_state sigpipe;
    ota_sigpipe_block(&sigpipe, conn->sigpipe_ignored);
    int result = step(conn, argument);
    ota_sigpipe_restore(&sigpipe);
    return result;
}

/* Repeats a step until it is done or fails, waiting on the socket before `deadline`. */
static int
ota_conn_drive(ota_conn *conn, ota_conn_step step, void *argument, int64_t deadline,
               const char *phase)
{
    for (;;) {
        int result = ota_conn_step_once(conn, step, argument);
        if (result == OTA_TLS_DONE || result < 0) {
            return result;
        }

        int status = ota_conn_wait_for(conn, result, deadline, INT64_MAX, phase);
        if (status != OTA_OK) {
            return status;
        }
    }
}

/*
 * A device's TLS stack writes its second flight a message at a time (mbedTLS does), and a
 * device TCP stack with Nagle's algorithm (lwIP's default) holds each message until the one
 * before is acknowledged. The kernel delays acknowledgements by up to 40 ms, so every such
 * handshake stalled there once. Asking for a prompt acknowledgement whenever the handshake waits
 * for the device lets the device's messages out at once. The kernel clears the request on its
 * own after a while, hence once per wait.
 */
static void
ota_conn_ask_prompt_ack(ota_conn *conn)
{
    int on = 1;
    setsockopt(conn->fd, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof(on));
}

static int
ota_conn_handshake_step(ota_conn *conn, void *unused)
{
    int result = ota_tls_session_handshake(conn->session, conn->detail, sizeof(conn->detail));
    if (result == OTA_TLS_WANT_READ) {
        ota_conn_ask_prompt_ack(conn);
    }
    return result;
}

int
ota_conn_wait_input(ota_conn *conn, int timeout_ms)
{
    if (conn == NULL || conn->session == NULL) {
        return OTA_ERR_USAGE;
    }
    return ota_conn_wait_for(conn, OTA_TLS_WANT_READ, ota_deadline_after(timeout_ms), INT64_MAX,
                             "handshake");
}

int
ota_conn_handshake_advance(ota_conn *conn, int timeout_ms)
{
    if (conn == NULL || conn->session == NULL) {
        return OTA_ERR_USAGE;
    }

    /* Only a full socket is waited for here: the device's next flight is the caller's wait. */
    int64_t deadline = ota_deadline_after(timeout_ms);
    for (;;) {
        int result = ota_conn_step_once(conn, ota_conn_handshake_step, NULL);
        if (result == OTA_TLS_DONE) {
            return OTA_OK;
        }
        if (result < 0) {
            return result;
        }
        if (result == OTA_TLS_WANT_READ) {
            return OTA_PENDING;
        }

        int status = ota_conn_wait_for(conn, result, deadline, INT64_MAX, "handshake");
        if (status != OTA_OK) {
            return status;
        }
    }
}

int
ota_conn_handshake_awaits_hello(const ota_conn *conn)
{
    return conn != NULL && conn->session != NULL && ota_tls_session_awaits_hello(conn->session);
}

int
ota_conn_handshake(ota_conn *conn, int timeout_ms)
{
    if (conn == NULL || conn->session == NULL) {
        return OTA_ERR_USAGE;
    }
    return ota_conn_drive(conn, ota_conn_handshake_step, NULL, ota_deadline_after(timeout_ms),
                          "handshake");
}

const char *
ota_conn_protocol(const ota_conn *conn)
{
    return conn == NULL || conn->session == NULL ? "" : ota_tls_session_protocol(conn->session);
}

const char *
ota_conn_cipher(const ota_conn *conn)
{
    return conn == NULL || conn->session == NULL ? "" : ota_tls_session_cipher(conn->session);
}

int
ota_conn_peer_certificate(const ota_conn *conn, const uint8_t **der, size_t *length)
{
    if (der != NULL) {
        *der = NULL;
    }
    if (length != NULL) {
        *length = 0;
    }
    if (conn == NULL || conn->session == NULL || der == NULL || length == NULL) {
        return OTA_ERR_USAGE;
    }
    return ota_tls_session_peer_certificate(conn->session, der, length);
}

/* Where a read step puts its bytes. */
struct ota_read_request {
    uint8_t *buffer;
    size_t capacity;
    size_t received;
};

static int
ota_conn_read_step(ota_conn *conn, void *argument)
{
    struct ota_read_request *request = argument;
    return ota_tls_session_read(conn->session, request->buffer, request->capacity,
                                &request->received, conn->detail, sizeof(conn->detail));
}

/* After a complete certificate: anything already sent behind it is a protocol error. */
int
ota_conn_check_idle(ota_conn *conn)
{
    if (conn == NULL || conn->session == NULL) {
        return OTA_ERR_USAGE;
    }

    uint8_t probe[1];
    struct ota_read_request request = {.buffer = probe, .capacity = sizeof(probe)};
    int result = ota_conn_step_once(conn, ota_conn_read_step, &request);

    if (result == OTA_TLS_DONE) {
        ota_detail_set(conn->detail, sizeof(conn->detail),
                       "certificate: the device sent bytes after its certificate");
        return OTA_ERR_PROTOCOL;
    }
    if (result == OTA_ERR_CLOSED) {
        ota_detail_set(conn->detail, sizeof(conn->detail),
                       "certificate: device closed right after its certificate");
        return OTA_ERR_CLOSED;
    }
    return result < 0 ? result : OTA_OK;
}

int
ota_conn_read_certificate(ota_conn *conn, uint8_t *buffer, size_t max_length, size_t *length,
                          int timeout_ms)
{
    if (conn == NULL || conn->session == NULL || buffer == NULL || length == NULL) {
        return OTA_ERR_USAGE;
    }
    if (max_length > OTA_DER_MAX_LENGTH) {
        max_length = OTA_DER_MAX_LENGTH;
    }

    int64_t deadline = ota_deadline_after(timeout_ms);
    size_t filled = 0;
    *length = 0;
    for (;;) {
        size_t needed = 0;
        const char *reason = NULL;
        ota_der_state state = ota_der_frame(buffer, filled, max_length, &needed, &reason);
        if (state == OTA_DER_INVALID) {
            ota_detail_set(conn->detail, sizeof(conn->detail), "certificate: %s", reason);
            return OTA_ERR_PROTOCOL;
        }
        if (state == OTA_DER_COMPLETE) {
            *length = filled;
            return ota_conn_check_idle(conn);
        }

        /* Read no further than the framing asks, so a trailing byte stays visible. */
        struct ota_read_request request = {.buffer = buffer + filled,
                                           .capacity = needed - filled};
        int status = ota_conn_drive(conn, ota_conn_read_step, &request, deadline, "certificate");
        if (status == OTA_ERR_CLOSED) {
            ota_detail_set(conn->detail, sizeof(conn->detail),
                           "certificate: device closed after %zu bytes", filled);
        }
        if (status != OTA_OK) {
            return status;
        }
        filled += request.received;
    }
}

/*
 * Repeats one transfer step until it makes progress, waiting for the device in between: at
 * most the stall deadline per wait, and never past the whole transfer's deadline.
 */
static int
ota_conn_transfer_step(ota_conn *conn, ota_conn_step step, void *request)
{
    for (;;) {
        int result = ota_conn_step_once(conn, step, request);
        if (result == OTA_TLS_DONE || result < 0) {
            return result;
        }

        int64_t stall_deadline = ota_deadline_after(conn->stall_timeout_ms);
        int status = ota_conn_wait_for(conn, result, stall_deadline, conn->transfer_deadline,
                                       "transfer");
        if (status == OTA_ERR_TIMEOUT) {
            int whole = ota_now_ms() >= conn->transfer_deadline;
            ota_detail_set(conn->detail, sizeof(conn->detail), "transfer: %s",
                           whole ? "whole-transfer deadline passed"
                                 : "device stopped reading (stall deadline passed)");
        }
        if (status != OTA_OK) {
            return status;
        }
    }
}

/* What a write step sends. */
struct ota_write_request {
    const uint8_t *block;
    size_t length;
    size_t written;
};

static int
ota_conn_write_step(ota_conn *conn, void *argument)
{
    struct ota_write_request *request = argument;
    return ota_tls_session_write(conn->session, request->block, request->length,
                                 &request->written, conn->detail, sizeof(conn->detail));
}

/* Writes one block in full. */
static int
ota_conn_write_block(ota_conn *conn, const uint8_t *block, size_t length)
{
    size_t done = 0;
    while (done < length) {
        struct ota_write_request request = {.block = block + done, .length = length - done};
        int status = ota_conn_transfer_step(conn, ota_conn_write_step, &request);
        if (status != OTA_OK) {
            return status;
        }
        done += request.written;
    }
    return OTA_OK;
}

/* Reports progress to the caller, if it asked. */
static void
ota_conn_report(const struct ota_progress *progress, uint64_t done, uint64_t total)
{
    if (progress->callback != NULL) {
        progress->callback(progress->context, done, total);
    }
}

/*
 * Lets the backend choose who encrypts the fallback path's records (the mbedTLS backend's own
 * AES-GCM sealer, or the library) and adds that to the note after why the kernel does not.
 */
static void
ota_conn_choose_user_engine(ota_conn *conn)
{
    char engine[128] = "";
    ota_tls_session_user_send(conn->session, engine, sizeof(engine));
    size_t used = strlen(conn->transfer_note);
    ota_detail_set(conn->transfer_note + used, sizeof(conn->transfer_note) - used, "%srecords: %s",
                   used > 0 ? "; " : "", engine);
}

/*
 * Holds partial TCP segments back while records are written one by one, so that records,
 * close_notify and the FIN leave in full segments: each segment costs the sender its own trip
 * through the stack (on loopback, the receiver's too). Only a partial tail is ever held, and
 * never for long: the next record completes it, and ota_conn_finish's shutdown(2) sends it
 * with the FIN (a reset discards it).
 */
static void
ota_conn_cork(ota_conn *conn)
{
    int on = 1;
    setsockopt(conn->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
}

/* The fallback path: pread into one fixed buffer, written as full TLS records. */
static int
ota_conn_send_by_pread(ota_conn *conn, const ota_image *image,
                       const struct ota_progress *progress, uint64_t *bytes_sent)
{
    if (conn->transfer_buffer == NULL) {
        conn->transfer_buffer = malloc(OTA_TRANSFER_BLOCK);
        if (conn->transfer_buffer == NULL) {
            return OTA_ERR_MEMORY;
        }
    }

    uint64_t size = ota_image_size(image);
    size_t block = ota_tls_session_max_record(conn->session);
    if (block == 0 || block > OTA_TRANSFER_BLOCK) {
        block = OTA_TRANSFER_BLOCK;
    }

    conn->transfer_path = "pread";
    ota_conn_choose_user_engine(conn);
    ota_conn_cork(conn);
    for (uint64_t offset = 0; offset < size;) {
        size_t length = size - offset < block ? (size_t)(size - offset) : block;
        int status = ota_image_read_at(image, conn->transfer_buffer, length, offset);
        if (status != OTA_OK) {
            ota_detail_set(conn->detail, sizeof(conn->detail), "transfer: image %s at %llu",
                           status == OTA_ERR_CHANGED ? "shrank" : "read failed",
                           (unsigned long long)offset);
            return status;
        }

        status = ota_conn_write_block(conn, conn->transfer_buffer, length);
        if (status != OTA_OK) {
            return status;
        }
        offset += length;
        *bytes_sent = offset;
        ota_conn_report(progress, offset, size);
    }
    return OTA_OK;
}

/* What a sendfile step sends. */
struct ota_sendfile_request {
    int file_fd;
    uint64_t offset;
    size_t length;
    size_t sent;
};

static int
ota_conn_sendfile_step(ota_conn *conn, void *argument)
{
    struct ota_sendfile_request *request = argument;
    return ota_tls_session_sendfile(conn->session, request->file_fd, request->offset,
                                    request->length, &request->sent, conn->detail,
                                    sizeof(conn->detail));
}

/*
 * The zero-copy path: the kernel encrypts, and sendfile(2) feeds it straight from the page
 * cache. Slices keep progress reports and deadline checks coming on fast links too.
 */
static int
ota_conn_send_by_kernel(ota_conn *conn, const ota_image *image,
                        const struct ota_progress *progress, uint64_t *bytes_sent)
{
    uint64_t size = ota_image_size(image);
    conn->transfer_path = "ktls-sendfile";
    for (uint64_t offset = 0; offset < size;) {
        uint64_t left = size - offset;
        struct ota_sendfile_request request = {
            .file_fd = ota_image_fd(image),
            .offset = offset,
            .length = left < OTA_SENDFILE_SLICE ? (size_t)left : OTA_SENDFILE_SLICE,
        };
        int status = ota_conn_transfer_step(conn, ota_conn_sendfile_step, &request);
        if (status == OTA_OK && request.sent == 0) {
            /* sendfile(2) reads nothing only past the end of the file: it shrank. */
            ota_detail_set(conn->detail, sizeof(conn->detail), "transfer: image shrank at %llu",
                           (unsigned long long)offset);
            status = OTA_ERR_CHANGED;
        }
        if (status != OTA_OK) {
            return status;
        }
        offset += request.sent;
        *bytes_sent = offset;
        ota_conn_report(progress, offset, size);
    }
    return OTA_OK;
}

/*
 * The kernel path needs the kernel to encrypt this session's records, and full-size records:
 * a device that negotiated a smaller maximum fragment gets the fallback path.
 */
static int
ota_conn_kernel_path_usable(ota_conn *conn)
{
    if (ota_tls_session_max_record(conn->session) != OTA_TRANSFER_BLOCK) {
        ota_detail_set(conn->transfer_note, sizeof(conn->transfer_note),
                       "user-space encryption: the device negotiated a smaller "
                       "max_fragment_length");
        return 0;
    }
    return ota_tls_session_kernel_send(conn->session, conn->transfer_note,
                                       sizeof(conn->transfer_note));
}

int
ota_conn_send_image(ota_conn *conn, const ota_image *image, const ota_transfer_limits *limits,
                    ota_progress_fn progress, void *progress_context, uint64_t *bytes_sent)
{
    uint64_t ignored_bytes;
    bytes_sent = bytes_sent != NULL ? bytes_sent : &ignored_bytes;
    *bytes_sent = 0;
    if (conn == NULL || conn->session == NULL || image == NULL || limits == NULL) {
        return OTA_ERR_USAGE;
    }

    conn->stall_timeout_ms = limits->stall_timeout_ms;
    conn->transfer_deadline = ota_deadline_after(limits->total_timeout_ms);
    struct ota_progress reporter = {.callback = progress, .context = progress_context};
    int status = ota_conn_kernel_path_usable(conn)
                     ? ota_conn_send_by_kernel(conn, image, &reporter, bytes_sent)
                     : ota_conn_send_by_pread(conn, image, &reporter, bytes_sent);
    if (status != OTA_OK) {
        return status;
    }

    /* The bytes sent are only the image if the file stayed the same all along. */
    status = ota_image_check_unchanged(image);
    if (status != OTA_OK) {
        ota_detail_set(conn->detail, sizeof(conn->detail),
                       "transfer: image file changed while it was being sent");
    }
    return status;
}

const char *
ota_conn_transfer_path(const ota_conn *conn)
{
    return conn == NULL ? "" : conn->transfer_path;
}

const char *
ota_conn_transfer_note(const ota_conn *conn)
{
    return conn == NULL ? "" : conn->transfer_note;
}

static int
ota_conn_close_notify_step(ota_conn *conn, void *unused)
{
    return ota_tls_session_close_notify(conn->session, conn->detail, sizeof(conn->detail));
}

/* Sends close_notify before `deadline`. */
static int
ota_conn_send_close_notify(ota_conn *conn, int64_t deadline)
{
    return ota_conn_drive(conn, ota_conn_close_notify_step, NULL, deadline, "close");
}

/* Bytes the device has not acknowledged yet (SIOCOUTQ), or -1 when the kernel cannot say. */
static int
ota_conn_unacknowledged(int fd)
{
    int queued = 0;
    return ioctl(fd, SIOCOUTQ, &queued) == 0 ? queued : -1;
}

/*
 * Reads whatever the device sent and discards it. OTA_OK when nothing more is there now,
 * OTA_ERR_CLOSED with *closed set at its clean close (FIN), OTA_ERR_CLOSED with a detail when
 * it reset. Reading matters: closing a socket with unread data makes the kernel send a reset,
 * which would throw away the image's last bytes still queued for the device.
 */
static int
ota_conn_discard_input(ota_conn *conn, size_t *discarded, int *closed)
{
    uint8_t scratch[4096];
    /* With kernel TLS on the receive side (OpenSSL turns it on), a record other than
     * application data, such as the device's close_notify, is only handed to a reader that
     * offers room for its record type; a plain recv(2) fails with EIO. */
    union {
        char buffer[CMSG_SPACE(sizeof(unsigned char))];
        struct cmsghdr align;
    } control;
    while (*discarded < OTA_FINISH_DRAIN_LIMIT) {
        struct iovec into = {.iov_base = scratch, .iov_len = sizeof(scratch)};
        struct msghdr message = {
            .msg_iov = &into,
            .msg_iovlen = 1,
            .msg_control = control.buffer,
            .msg_controllen = sizeof(control.buffer),
        };
        ssize_t got = recvmsg(conn->fd, &message, 0);
        if (got == 0) {
            *closed = 1;
            return OTA_OK;
        }
        if (got > 0) {
            *discarded += (size_t)got;
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return OTA_OK;
        }
        ota_detail_set(conn->detail, sizeof(conn->detail), "close: %s before the device "
                       "confirmed the image", errno == ECONNRESET ? "device reset the connection"
                                                                  : strerror(errno));
        return OTA_ERR_CLOSED;
    }
    ota_detail_set(conn->detail, sizeof(conn->detail), "close: device keeps sending data");
    return OTA_ERR_PROTOCOL;
}

/* How long to wait in one round of the final phase: the nearest deadline, and no longer than
 * the acknowledgement poll while bytes are still unacknowledged. */
static int64_t
ota_conn_next_wake(int unacknowledged, int64_t stall_deadline, int64_t close_deadline)
{
    if (unacknowledged == 0) {
        return close_deadline;
    }
    int64_t poll_at = ota_now_ms() + OTA_ACK_POLL_MS;
    return poll_at < stall_deadline ? poll_at : stall_deadline;
}

/*
 * After close_notify: waits until the device confirms the image by closing its side.
 *
 * The whole image may sit in socket buffers when the last write returns, so "sent" is not
 * "received". While the device keeps acknowledging bytes it is still reading, and the stall
 * deadline restarts; once everything is acknowledged it has `wait_ms` to read what its own
 * buffers hold and close. Only that close confirms. Arrival of an acknowledgement has no
 * readiness event, so only this final phase samples the send queue on a short timer. A reset,
 * a stall, no close in time or the whole-transfer deadline is a failure.
 */
static int
ota_conn_await_confirmation(ota_conn *conn, int wait_ms)
{
    int stall_ms = conn->stall_timeout_ms >= 0 ? conn->stall_timeout_ms : wait_ms;
    int64_t stall_deadline = ota_deadline_after(stall_ms);
    int64_t close_deadline = INT64_MAX;
    int last_unacknowledged = INT32_MAX;
    size_t discarded = 0;
    for (;;) {
        int closed = 0;
        int status = ota_conn_discard_input(conn, &discarded, &closed);
        if (status != OTA_OK || closed) {
            return status;
        }

        int unacknowledged = ota_conn_unacknowledged(conn->fd);
        if (unacknowledged < last_unacknowledged) {
            stall_deadline = ota_deadline_after(stall_ms);
            last_unacknowledged = unacknowledged;
        }
        if (unacknowledged <= 0 && close_deadline == INT64_MAX) {
            close_deadline = ota_deadline_after(wait_ms);
        }

        int64_t now = ota_now_ms();
        if (now >= conn->transfer_deadline) {
            ota_detail_set(conn->detail, sizeof(conn->detail),
                           "close: whole-transfer deadline passed before the device confirmed");
            return OTA_ERR_TIMEOUT;
        }
        if (unacknowledged > 0 && now >= stall_deadline) {
            ota_detail_set(conn->detail, sizeof(conn->detail),
                           "close: device stopped reading with %d bytes unacknowledged",
                           unacknowledged);
            return OTA_ERR_TIMEOUT;
        }
        if (unacknowledged <= 0 && now >= close_deadline) {
            /* Acknowledged means in the device's TCP buffers, not read: only its close says it
             * read to the end. */
            ota_detail_set(conn->detail, sizeof(conn->detail),
                           "close: device did not close within the close timeout after "
                           "acknowledging the image");
            return OTA_ERR_TIMEOUT;
        }

        int64_t wake = ota_conn_next_wake(unacknowledged, stall_deadline, close_deadline);
        status = ota_wait_fd(conn->fd, OTA_WAIT_READ, wake, conn->transfer_deadline, conn->cancel);
        if (status != OTA_OK && status != OTA_ERR_TIMEOUT) {
            return ota_conn_wait_failed(conn, status, "close");
        }
    }
}

/* Frees the TLS state and closes the socket without a reset. */
static void
ota_conn_close_gracefully(ota_conn *conn)
{
    ota_tls_session_free(conn->session);
    conn->session = NULL;
    close(conn->fd);
    conn->fd = -1;
}

int
ota_conn_finish(ota_conn *conn, int wait_ms)
{
    if (conn == NULL || conn->session == NULL || conn->fd < 0) {
        return OTA_ERR_USAGE;
    }

    int stall_ms = conn->stall_timeout_ms >= 0 ? conn->stall_timeout_ms : wait_ms;
    int64_t stall_deadline = ota_deadline_after(stall_ms);
    int status = ota_conn_send_close_notify(conn, stall_deadline < conn->transfer_deadline
                                                      ? stall_deadline
                                                      : conn->transfer_deadline);
    if (status == OTA_OK) {
        shutdown(conn->fd, SHUT_WR);
        status = ota_conn_await_confirmation(conn, wait_ms);
    }
    if (status != OTA_OK) {
        /* Not confirmed: a reset, so that a device still reading sees an error, not an end. */
        ota_conn_abort(conn);
        return status;
    }
    ota_conn_close_gracefully(conn);
    return OTA_OK;
}

int
ota_conn_refuse(ota_conn *conn)
{
    if (conn == NULL || conn->fd < 0) {
        return OTA_ERR_USAGE;
    }

    int status = OTA_OK;
    if (conn->session != NULL) {
        status = ota_conn_send_close_notify(conn, ota_deadline_after(OTA_REFUSE_WRITE_MS));
    }
    if (status != OTA_OK) {
        ota_conn_abort(conn);
        return status;
    }

    shutdown(conn->fd, SHUT_WR);
    ota_conn_close_gracefully(conn);
    return OTA_OK;
}

void
ota_conn_abort(ota_conn *conn)
{
    if (conn == NULL) {
        return;
    }
    ota_tls_session_free(conn->session);
    conn->session = NULL;
    ota_socket_reset(conn->fd);
    conn->fd = -1;
}

const char *
ota_conn_detail(const ota_conn *conn)
{
    return conn == NULL ? "" : conn->detail;
}

void
ota_conn_free(ota_conn *conn)
{
    if (conn == NULL) {
        return;
    }
    ota_conn_abort(conn);
    free(conn->transfer_buffer);
    free(conn);
}
