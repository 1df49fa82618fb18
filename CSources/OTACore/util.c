/*
 * util.c - status names, details, logging, clocks, readiness waits, cancellation, resets.
 */

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ota_internal.h"
#include "tls_backend.h"

struct ota_cancel {
    int event_fd;
    int fired; /* the same news as the event, for a check without a system call */
};

static ota_log_fn ota_log_callback;
static void *ota_log_context;

const char *
ota_status_name(int status)
{
    switch (status) {
    case OTA_PENDING: return "pending";
    case OTA_OK: return "ok";
    case OTA_ERR_CLOSED: return "closed";
    case OTA_ERR_TIMEOUT: return "timeout";
    case OTA_ERR_PROTOCOL: return "protocol";
    case OTA_ERR_IO: return "io";
    case OTA_ERR_USAGE: return "usage";
    case OTA_ERR_CONFIG: return "config";
    case OTA_ERR_MEMORY: return "memory";
    case OTA_ERR_CHANGED: return "changed";
    case OTA_ERR_CANCELLED: return "cancelled";
    case OTA_ERR_INTERNAL: return "internal";
    default: return "unknown";
    }
}

const char *
ota_backend_name(void)
{
    return ota_tls_backend_name();
}

int
ota_backend_supports_proof(void)
{
    return ota_tls_backend_supports_proof();
}

void
ota_thread_done(void)
{
    ota_tls_thread_done();
}

void
ota_heap_trim(void)
{
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

const char *
ota_backend_version(void)
{
    return ota_tls_backend_version();
}

void
ota_set_log_callback(ota_log_fn callback, void *context)
{
    ota_log_callback = callback;
    ota_log_context = context;
}

void
ota_log(int level, const char *format, ...)
{
    if (ota_log_callback == NULL) {
        return;
    }

    char message[512];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof(message), format, arguments);
    va_end(arguments);
    ota_log_callback(ota_log_context, level, message);
}

void
ota_detail_set(char *detail, size_t detail_size, const char *format, ...)
{
    if (detail == NULL || detail_size == 0) {
        return;
    }

    va_list arguments;
    va_start(arguments, format);
    vsnprintf(detail, detail_size, format, arguments);
    va_end(arguments);
}

int64_t
ota_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* When (ota_now_ms) the tls module was last looked for (0: never), and whether it was there. */
static int64_t ota_kernel_tls_checked_at;
static int ota_kernel_tls_was_loaded;

/* Until when (ota_now_ms) connections skip kernel TLS; 0: not yet refused. */
static int64_t ota_kernel_tls_quiet_until;

int
ota_kernel_tls_module_loaded(void)
{
    /*
     * A path lookup in /proc costs more than the rest of the choice, so a busy agent looks
     * once per tenth of a second; a module loaded (or unloaded) meanwhile is seen that late.
     */
    int64_t now = ota_now_ms();
    int64_t checked_at = __atomic_load_n(&ota_kernel_tls_checked_at, __ATOMIC_ACQUIRE);
    if (checked_at != 0 && now - checked_at < 100) {
        return __atomic_load_n(&ota_kernel_tls_was_loaded, __ATOMIC_RELAXED);
    }

    int loaded = access("/proc/net/tls_stat", F_OK) == 0;
    __atomic_store_n(&ota_kernel_tls_was_loaded, loaded, __ATOMIC_RELAXED);
    __atomic_store_n(&ota_kernel_tls_checked_at, now, __ATOMIC_RELEASE);
    return loaded;
}

int
ota_kernel_tls_worth_trying(void)
{
    if (ota_kernel_tls_module_loaded()) {
        return 1;
    }

    /* One connection per interval claims the try, by moving the end of the quiet time. */
    int64_t now = ota_now_ms();
    int64_t until = __atomic_load_n(&ota_kernel_tls_quiet_until, __ATOMIC_RELAXED);
    return now >= until &&
           __atomic_compare_exchange_n(&ota_kernel_tls_quiet_until, &until,
                                       now + OTA_KERNEL_TLS_RETRY_MS, 0, __ATOMIC_RELAXED,
                                       __ATOMIC_RELAXED);
}

int64_t
ota_deadline_after(int timeout_ms)
{
    if (timeout_ms < 0) {
        return INT64_MAX;
    }
    return ota_now_ms() + timeout_ms;
}

int
ota_deadline_remaining(int64_t deadline)
{
    if (deadline == INT64_MAX) {
        return -1;
    }

    int64_t left = deadline - ota_now_ms();
    if (left <= 0) {
        return 0;
    }
    /* poll(2) takes an int; waking early is harmless, the caller loops. */
    return left > 0x3fffffff ? 0x3fffffff : (int)left;
}

int
ota_wait_fd(int fd, int what, int64_t deadline, int64_t second_deadline,
            const ota_cancel *cancel)
{
    int64_t earliest = deadline < second_deadline ? deadline : second_deadline;
    struct pollfd watched[2] = {
        {.fd = fd, .events = (short)((what & OTA_WAIT_READ ? POLLIN : 0) |
                                     (what & OTA_WAIT_WRITE ? POLLOUT : 0))},
        {.fd = ota_cancel_fd(cancel), .events = POLLIN},
    };
    nfds_t count = watched[1].fd >= 0 ? 2 : 1;

    for (;;) {
        int timeout = ota_deadline_remaining(earliest);
        int ready = poll(watched, count, timeout);
        if (ready == 0 && timeout == 0) {
            return OTA_ERR_TIMEOUT;
        }
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready < 0) {
            return OTA_ERR_IO;
        }
        if (count == 2 && watched[1].revents != 0) {
            return OTA_ERR_CANCELLED;
        }
        /* Errors and hang-ups count as ready: the next I/O call reports them precisely. */
        if (watched[0].revents != 0) {
            return OTA_OK;
        }
    }
}

void
ota_socket_reset(int fd)
{
    if (fd < 0) {
        return;
    }

    /* A zero linger time makes close(2) send RST instead of FIN: the device must see an
     * error, because its TLS read reports a plain FIN as a clean end of the image. */
    struct linger abortive = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof(abortive));
    close(fd);
}

ota_cancel *
ota_cancel_new(void)
{
    ota_cancel *cancel = calloc(1, sizeof(*cancel));
    if (cancel == NULL) {
        return NULL;
    }

    cancel->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (cancel->event_fd < 0) {
        free(cancel);
        return NULL;
    }
    return cancel;
}

void
ota_cancel_fire(ota_cancel *cancel)
{
    if (cancel == NULL) {
        return;
    }

    /* Set before the event, so a waiter woken by the event also finds the flag set. */
    __atomic_store_n(&cancel->fired, 1, __ATOMIC_RELEASE);

    /* The counter stays non-zero forever, so every later poll sees it readable too. */
    uint64_t one = 1;
    ssize_t written = write(cancel->event_fd, &one, sizeof(one));
    (void)written;
}

int
ota_cancel_is_fired(const ota_cancel *cancel)
{
    if (cancel == NULL) {
        return 0;
    }

    /* Asked many times per Dice-Auth call (curl's progress callback): no poll(2) here. */
    return __atomic_load_n(&cancel->fired, __ATOMIC_ACQUIRE);
}

int
ota_cancel_wait(const ota_cancel *cancel, int timeout_ms)
{
    if (cancel == NULL) {
        struct timespec pause = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000};
        while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
        }
        return OTA_ERR_TIMEOUT;
    }

    int64_t deadline = ota_deadline_after(timeout_ms);
    struct pollfd watched = {.fd = cancel->event_fd, .events = POLLIN};
    for (;;) {
        int ready = poll(&watched, 1, ota_deadline_remaining(deadline));
        if (ready > 0) {
            return OTA_ERR_CANCELLED;
        }
        if (ready == 0) {
            return OTA_ERR_TIMEOUT;
        }
        if (errno != EINTR) {
            return OTA_ERR_IO;
        }
    }
}

int
ota_cancel_fd(const ota_cancel *cancel)
{
    return cancel == NULL ? -1 : cancel->event_fd;
}

void
ota_cancel_free(ota_cancel *cancel)
{
    if (cancel == NULL) {
        return;
    }
    close(cancel->event_fd);
    free(cancel);
}
