/*
 * listener.c - the listening socket: dual-stack by default, ephemeral ports, interruptible
 * accepts.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ota_internal.h"

struct ota_listener {
    int fd;
    int interrupt_fd;
    int interrupted; /* set (atomically) with the interrupt's eventfd, read without a poll */
    uint16_t port;
    char address[INET6_ADDRSTRLEN];
};

/* Fills `storage` from a numeric address, or the wildcard when `bind_address` is empty. */
static int
ota_listener_resolve(const char *bind_address, uint16_t port, struct sockaddr_storage *storage,
                     socklen_t *storage_length, char *detail, size_t detail_size)
{
    memset(storage, 0, sizeof(*storage));
    if (bind_address == NULL || bind_address[0] == '\0') {
        struct sockaddr_in6 *any = (struct sockaddr_in6 *)storage;
        any->sin6_family = AF_INET6;
        any->sin6_addr = in6addr_any;
        any->sin6_port = htons(port);
        *storage_length = sizeof(*any);
        return OTA_OK;
    }

    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICHOST | AI_PASSIVE,
    };
    struct addrinfo *found = NULL;
    int error = getaddrinfo(bind_address, NULL, &hints, &found);
    if (error != 0 || found == NULL) {
        ota_detail_set(detail, detail_size, "'%s' is not a numeric IPv4 or IPv6 address",
                       bind_address);
        return OTA_ERR_CONFIG;
    }

    memcpy(storage, found->ai_addr, found->ai_addrlen);
    *storage_length = found->ai_addrlen;
    freeaddrinfo(found);
    if (storage->ss_family == AF_INET) {
        ((struct sockaddr_in *)storage)->sin_port = htons(port);
    } else {
        ((struct sockaddr_in6 *)storage)->sin6_port = htons(port);
    }
    return OTA_OK;
}

/* Falls back to IPv4 alone when the host has no IPv6 at all. */
static int
ota_listener_socket(struct sockaddr_storage *storage, socklen_t *storage_length, int wildcard)
{
    int fd = socket(storage->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 || !wildcard || errno != EAFNOSUPPORT) {
        return fd;
    }

    struct sockaddr_in6 *any6 = (struct sockaddr_in6 *)storage;
    uint16_t port = any6->sin6_port;
    struct sockaddr_in *any4 = (struct sockaddr_in *)storage;
    memset(storage, 0, sizeof(*storage));
    any4->sin_family = AF_INET;
    any4->sin_addr.s_addr = htonl(INADDR_ANY);
    any4->sin_port = port;
    *storage_length = sizeof(*any4);
    return socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

static void
ota_listener_record_address(ota_listener *listener)
{
    struct sockaddr_storage bound;
    socklen_t bound_length = sizeof(bound);
    if (getsockname(listener->fd, (struct sockaddr *)&bound, &bound_length) != 0) {
        return;
    }

    if (bound.ss_family == AF_INET) {
        struct sockaddr_in *address = (struct sockaddr_in *)&bound;
        inet_ntop(AF_INET, &address->sin_addr, listener->address, sizeof(listener->address));
        listener->port = ntohs(address->sin_port);
    } else {
        struct sockaddr_in6 *address = (struct sockaddr_in6 *)&bound;
        inet_ntop(AF_INET6, &address->sin6_addr, listener->address, sizeof(listener->address));
        listener->port = ntohs(address->sin6_port);
    }
}

ota_listener *
ota_listener_new(const char *bind_address, uint16_t port, int backlog, int *status,
                 char *detail, size_t detail_size)
{
    int ignored_status;
    status = status != NULL ? status : &ignored_status;
    int wildcard = bind_address == NULL || bind_address[0] == '\0';
    const char *shown = wildcard ? "*" : bind_address;

    struct sockaddr_storage storage;
    socklen_t storage_length;
    *status = ota_listener_resolve(bind_address, port, &storage, &storage_length, detail,
                                   detail_size);
    if (*status != OTA_OK) {
        return NULL;
    }

    ota_listener *listener = calloc(1, sizeof(*listener));
    if (listener == NULL) {
        *status = OTA_ERR_MEMORY;
        return NULL;
    }
    listener->interrupt_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    listener->fd = ota_listener_socket(&storage, &storage_length, wildcard);
    if (listener->fd < 0 || listener->interrupt_fd < 0) {
        ota_detail_set(detail, detail_size, "socket: %s", strerror(errno));
        goto failed;
    }

    int on = 1;
    int off = 0;
    setsockopt(listener->fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (storage.ss_family == AF_INET6 && wildcard) {
        /* One socket for both families: IPv4 devices appear as ::ffff:a.b.c.d. */
        setsockopt(listener->fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    }

    if (bind(listener->fd, (struct sockaddr *)&storage, storage_length) != 0) {
        ota_detail_set(detail, detail_size, "cannot bind %s port %u: %s", shown, port,
                       strerror(errno));
        goto failed;
    }
    if (listen(listener->fd, backlog > 0 ? backlog : 128) != 0) {
        ota_detail_set(detail, detail_size, "cannot listen on %s port %u: %s", shown, port,
                       strerror(errno));
        goto failed;
    }

    ota_listener_record_address(listener);
    *status = OTA_OK;
    return listener;

failed:
    *status = OTA_ERR_CONFIG;
    ota_listener_free(listener);
    return NULL;
}

uint16_t
ota_listener_port(const ota_listener *listener)
{
    return listener == NULL ? 0 : listener->port;
}

const char *
ota_listener_address(const ota_listener *listener)
{
    return listener == NULL ? "" : listener->address;
}

void
ota_listener_refuse(int fd)
{
    ota_socket_reset(fd);
}

/* Writes the numeric peer address, unwrapping IPv4-mapped IPv6 addresses; cut short, but
 * always terminated, when `out` is too small. */
static void
ota_listener_peer_name(const struct sockaddr_storage *peer, char *out, size_t out_size,
                       uint16_t *peer_port)
{
    char name[INET6_ADDRSTRLEN] = "";
    size_t name_size = sizeof(name);
    uint16_t port = 0;
    if (peer->ss_family == AF_INET) {
        const struct sockaddr_in *address = (const struct sockaddr_in *)peer;
        inet_ntop(AF_INET, &address->sin_addr, name, (socklen_t)name_size);
        port = ntohs(address->sin_port);
    } else if (peer->ss_family == AF_INET6) {
        const struct sockaddr_in6 *address = (const struct sockaddr_in6 *)peer;
        if (IN6_IS_ADDR_V4MAPPED(&address->sin6_addr)) {
            inet_ntop(AF_INET, &address->sin6_addr.s6_addr[12], name, (socklen_t)name_size);
        } else {
            inet_ntop(AF_INET6, &address->sin6_addr, name, (socklen_t)name_size);
        }
        port = ntohs(address->sin6_port);
    } else {
        snprintf(name, name_size, "unknown");
    }
    if (peer_port != NULL) {
        *peer_port = port;
    }
    snprintf(out, out_size, "%s", name);
}

/* Waits for the listening socket, the interrupt, or the cancel source. */
static int
ota_listener_wait(ota_listener *listener, int64_t deadline, const ota_cancel *cancel)
{
    struct pollfd watched[3] = {
        {.fd = listener->fd, .events = POLLIN},
        {.fd = listener->interrupt_fd, .events = POLLIN},
        {.fd = ota_cancel_fd(cancel), .events = POLLIN},
    };

    for (;;) {
        /* Poll at least once, so a connection already waiting is taken even at timeout 0. */
        int timeout = ota_deadline_remaining(deadline);
        int ready = poll(watched, 3, timeout);
        if (ready == 0 && timeout == 0) {
            return OTA_ERR_TIMEOUT;
        }
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready < 0) {
            return OTA_ERR_IO;
        }
        if (watched[1].revents != 0 || watched[2].revents != 0) {
            return OTA_ERR_CANCELLED;
        }
        if (watched[0].revents != 0) {
            return OTA_OK;
        }
    }
}

int
ota_listener_wait_connection(ota_listener *listener, int timeout_ms, const ota_cancel *cancel)
{
    if (listener == NULL) {
        return OTA_ERR_USAGE;
    }
    if (listener->fd < 0) {
        return OTA_ERR_CANCELLED;
    }
    return ota_listener_wait(listener, ota_deadline_after(timeout_ms), cancel);
}

int
ota_listener_accept(ota_listener *listener, int timeout_ms, const ota_cancel *cancel,
                    int *client_fd, char *peer, size_t peer_size, uint16_t *peer_port)
{
    if (listener == NULL || client_fd == NULL || peer == NULL || peer_size == 0) {
        return OTA_ERR_USAGE;
    }
    if (listener->fd < 0) {
        return OTA_ERR_CANCELLED;
    }

    /* accept(2) first and poll only when nothing waits: the accept loop has usually just seen
     * the connection in ota_listener_wait_connection, and a second poll would cost a system
     * call per device. The interrupt and the cancel source still win over a waiting device. */
    int64_t deadline = ota_deadline_after(timeout_ms);
    for (;;) {
        if (__atomic_load_n(&listener->interrupted, __ATOMIC_ACQUIRE) ||
            ota_cancel_is_fired(cancel)) {
            return OTA_ERR_CANCELLED;
        }

        struct sockaddr_storage address;
        socklen_t address_length = sizeof(address);
        int fd = accept4(listener->fd, (struct sockaddr *)&address, &address_length,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            /* The agent writes whole records and small handshake flights; waiting for
             * Nagle to coalesce them only stalls each phase on the device's delayed ACK. */
            int on = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
            ota_listener_peer_name(&address, peer, peer_size, peer_port);
            *client_fd = fd;
            return OTA_OK;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int status = ota_listener_wait(listener, deadline, cancel);
            if (status != OTA_OK) {
                return status;
            }
            continue;
        }
        /* A connection reset before we took it: try again. */
        if (errno == ECONNABORTED || errno == EINTR || errno == EPROTO) {
            continue;
        }
        snprintf(peer, peer_size, "accept: %s", strerror(errno));
        return OTA_ERR_IO;
    }
}

void
ota_listener_interrupt(ota_listener *listener)
{
    if (listener == NULL) {
        return;
    }

    __atomic_store_n(&listener->interrupted, 1, __ATOMIC_RELEASE);
    uint64_t one = 1;
    ssize_t written = write(listener->interrupt_fd, &one, sizeof(one));
    (void)written;
}

void
ota_listener_close(ota_listener *listener)
{
    if (listener == NULL || listener->fd < 0) {
        return;
    }
    close(listener->fd);
    listener->fd = -1;
    ota_listener_interrupt(listener);
}

void
ota_listener_free(ota_listener *listener)
{
    if (listener == NULL) {
        return;
    }
    if (listener->fd >= 0) {
        close(listener->fd);
    }
    if (listener->interrupt_fd >= 0) {
        close(listener->interrupt_fd);
    }
    free(listener);
}
