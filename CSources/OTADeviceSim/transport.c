/*
 * TCP for the simulated devices, with plain sockets rather than mbedtls_net_* so that every
 * wait (connect, send, receive) can be bounded by one deadline per device and no write can
 * raise SIGPIPE.
 *
 * Sockets are non-blocking; the callbacks wait with poll() for at most the time left. To
 * mbedTLS they look blocking: they either make progress, fail, or report a timeout.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* SOCK_NONBLOCK, MSG_NOSIGNAL and the GNU strerror_r */
#endif

#include "transport.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>

uint64_t monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t) now.tv_sec * 1000u + (uint64_t) now.tv_nsec / 1000000u;
}

uint64_t transport_remaining_ms(const struct transport *transport)
{
    uint64_t now = monotonic_ms();
    return now >= transport->deadline_ms ? 0 : transport->deadline_ms - now;
}

void transport_init(struct transport *transport, uint64_t deadline_ms)
{
    transport->socket_fd = -1;
    transport->deadline_ms = deadline_ms;
    transport->last_errno = 0;
    transport->source_address = NULL;
}

/* Binds the socket to --source (port 0) before connecting. 0 or an errno. */
static int bind_source(const struct transport *transport, int socket_fd, int family)
{
    if (transport->source_address == NULL) {
        return 0;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
    struct addrinfo *local = NULL;
    if (getaddrinfo(transport->source_address, "0", &hints, &local) != 0) {
        return EADDRNOTAVAIL;
    }
    int error_number = bind(socket_fd, local->ai_addr, local->ai_addrlen) == 0 ? 0 : errno;
    freeaddrinfo(local);
    return error_number;
}

const char *describe_errno(int error_number, char *buffer, size_t buffer_size)
{
    /* The GNU strerror_r may return a static string instead of filling the buffer. */
    return strerror_r(error_number, buffer, buffer_size);
}

/* Waits until the socket is ready for events: 1 ready, 0 deadline passed, -1 poll failed. */
static int wait_until_ready(struct transport *transport, short events)
{
    for (;;) {
        uint64_t remaining = transport_remaining_ms(transport);
        if (remaining == 0) {
            return 0;
        }
        struct pollfd watched = {.fd = transport->socket_fd, .events = events};
        int timeout = remaining > INT_MAX ? INT_MAX : (int) remaining;
        int ready = poll(&watched, 1, timeout);
        if (ready > 0) {
            /* Errors and hang-ups count as ready: the next call on the socket reports them. */
            return 1;
        }
        if (ready < 0 && errno != EINTR) {
            transport->last_errno = errno;
            return -1;
        }
    }
}

/* Starts a non-blocking connect to one address and waits for its result until the deadline. */
static int connect_to_address(struct transport *transport, const struct addrinfo *address)
{
    int socket_fd = socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                           address->ai_protocol);
    if (socket_fd < 0) {
        return errno;
    }
    transport->socket_fd = socket_fd;
    int error_number = bind_source(transport, socket_fd, address->ai_family);
    if (error_number != 0) {
        transport_close(transport);
        return error_number;
    }
    if (connect(socket_fd, address->ai_addr, address->ai_addrlen) != 0) {
        error_number = errno;
    }
    if (error_number == EINPROGRESS) {
        int ready = wait_until_ready(transport, POLLOUT);
        socklen_t length = sizeof error_number;
        if (ready == 0) {
            error_number = ETIMEDOUT;
        } else if (ready < 0) {
            error_number = transport->last_errno;
        } else if (getsockopt(socket_fd, SOL_SOCKET, SO_ERROR, &error_number, &length) != 0) {
            error_number = errno;
        }
    }
    if (error_number != 0) {
        transport_close(transport);
    }
    return error_number;
}

bool transport_connect(struct transport *transport, const char *host, const char *port,
                       char *detail, size_t detail_size)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    struct addrinfo *addresses = NULL;
    int lookup_status = getaddrinfo(host, port, &hints, &addresses);
    if (lookup_status != 0) {
        snprintf(detail, detail_size, "cannot resolve %s: %s", host, gai_strerror(lookup_status));
        return false;
    }
    int error_number = 0;
    for (const struct addrinfo *address = addresses; address != NULL; address = address->ai_next) {
        error_number = connect_to_address(transport, address);
        if (error_number == 0 || error_number == ETIMEDOUT) {
            break;
        }
    }
    freeaddrinfo(addresses);
    if (error_number != 0) {
        char text[128];
        snprintf(detail, detail_size, "connect to %s port %s: %s", host, port,
                 describe_errno(error_number, text, sizeof text));
        transport->last_errno = error_number;
        return false;
    }
    return true;
}

void transport_close(struct transport *transport)
{
    if (transport->socket_fd >= 0) {
        close(transport->socket_fd);
        transport->socket_fd = -1;
    }
}

void transport_reset(struct transport *transport)
{
    if (transport->socket_fd < 0) {
        return;
    }
    struct linger abortive = {.l_onoff = 1, .l_linger = 0};
    if (setsockopt(transport->socket_fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof abortive) != 0) {
        transport->last_errno = errno;
    }
    transport_close(transport);
}

bool transport_sleep(const struct transport *transport, unsigned duration_ms)
{
    uint64_t wake_at = monotonic_ms() + duration_ms;
    bool cut_short = wake_at > transport->deadline_ms;
    if (cut_short) {
        wake_at = transport->deadline_ms;
    }
    for (uint64_t now = monotonic_ms(); now < wake_at; now = monotonic_ms()) {
        uint64_t left = wake_at - now;
        struct timespec pause = {.tv_sec = (time_t) (left / 1000),
                                 .tv_nsec = (long) (left % 1000) * 1000000L};
        nanosleep(&pause, NULL); /* an interruption just goes round the loop again */
    }
    return !cut_short;
}

/*
 * Shared failure handling of the callbacks, called right after send() or recv() failed.
 * Returns 0 to retry, or the mbedTLS error code to hand back.
 */
static int handle_socket_failure(struct transport *transport, short events, int failure_code)
{
    int error_number = errno;
    if (error_number == EINTR) {
        return 0;
    }
    if (error_number == EAGAIN || error_number == EWOULDBLOCK) {
        int ready = wait_until_ready(transport, events);
        if (ready > 0) {
            return 0;
        }
        return ready == 0 ? MBEDTLS_ERR_SSL_TIMEOUT : failure_code;
    }
    transport->last_errno = error_number;
    if (error_number == EPIPE || error_number == ECONNRESET) {
        return MBEDTLS_ERR_NET_CONN_RESET;
    }
    return failure_code;
}

int transport_send(void *context, const unsigned char *buffer, size_t length)
{
    struct transport *transport = context;
    if (length > INT_MAX) {
        length = INT_MAX; /* the return value must fit an int; mbedTLS sends the rest later */
    }
    for (;;) {
        ssize_t sent = send(transport->socket_fd, buffer, length, MSG_NOSIGNAL);
        if (sent >= 0) {
            return (int) sent;
        }
        int status = handle_socket_failure(transport, POLLOUT, MBEDTLS_ERR_NET_SEND_FAILED);
        if (status != 0) {
            return status;
        }
    }
}

int transport_receive(void *context, unsigned char *buffer, size_t length)
{
    struct transport *transport = context;
    if (length > INT_MAX) {
        length = INT_MAX;
    }
    for (;;) {
        ssize_t received = recv(transport->socket_fd, buffer, length, 0);
        if (received >= 0) {
            return (int) received; /* 0 is the peer's plain TCP end of stream */
        }
        int status = handle_socket_failure(transport, POLLIN, MBEDTLS_ERR_NET_RECV_FAILED);
        if (status != 0) {
            return status;
        }
    }
}
