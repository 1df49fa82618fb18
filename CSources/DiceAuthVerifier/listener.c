// The listening socket: address parsing, binding, reporting the bound address, accepting.
#include "listener.h"
#include "io.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// Splits "HOST:PORT" or "[HOST]:PORT" into its parts. An unbracketed host may not contain a
// colon, so that "::1:80" is refused instead of being guessed at.
static bool split_address(const char *text, char *host, size_t host_capacity, const char **port)
{
    const char *host_start = text;
    const char *host_end = NULL;
    if (text[0] == '[') {
        host_start = text + 1;
        host_end = strchr(host_start, ']');
        if (host_end == NULL || host_end[1] != ':') {
            return false;
        }
        *port = host_end + 2;
    } else {
        host_end = strrchr(text, ':');
        if (host_end == NULL || memchr(text, ':', (size_t)(host_end - text)) != NULL) {
            return false;
        }
        *port = host_end + 1;
    }
    size_t host_length = (size_t)(host_end - host_start);
    if (host_length == 0 || host_length >= host_capacity || **port == '\0') {
        return false;
    }
    memcpy(host, host_start, host_length);
    host[host_length] = '\0';
    return true;
}

// Creates a non-blocking socket bound to address and listening; -1 with errno set on failure.
static int listen_on(const struct addrinfo *address, int backlog)
{
    int fd = socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    address->ai_protocol);
    if (fd < 0) {
        return -1;
    }
    // Lets a test restart the verifier on a fixed port while old connections sit in TIME_WAIT.
    int enable = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &enable, sizeof enable) != 0 ||
        bind(fd, address->ai_addr, address->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
        int saved_errno = errno;
        close(fd);
        errno = saved_errno;
        return -1;
    }
    return fd;
}

// Writes the socket's local address as "127.0.0.1:PORT" or "[::1]:PORT".
static bool describe_bound_address(int fd, char *text, size_t capacity)
{
    struct sockaddr_storage bound;
    socklen_t bound_length = sizeof bound;
    char host[NI_MAXHOST];
    char port[NI_MAXSERV];
    if (getsockname(fd, (struct sockaddr *)&bound, &bound_length) != 0 ||
        getnameinfo((struct sockaddr *)&bound, bound_length, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        return false;
    }
    const char *format = bound.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s";
    int written = snprintf(text, capacity, format, host, port);
    return written > 0 && (size_t)written < capacity;
}

int listener_open(const char *address_text, int backlog, char *bound_text, size_t capacity)
{
    char host[NI_MAXHOST];
    const char *port = NULL;
    if (!split_address(address_text, host, sizeof host, &port)) {
        fprintf(stderr, "dice-auth-verifier: --listen wants ADDR:PORT or [IPV6]:PORT, not '%s'\n",
                address_text);
        return -1;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *candidates = NULL;
    int lookup = getaddrinfo(host, port, &hints, &candidates);
    if (lookup != 0) {
        fprintf(stderr, "dice-auth-verifier: cannot use '%s': %s\n", address_text,
                gai_strerror(lookup));
        return -1;
    }
    int fd = -1;
    int last_errno = 0;
    for (const struct addrinfo *candidate = candidates; candidate != NULL && fd < 0;
         candidate = candidate->ai_next) {
        fd = listen_on(candidate, backlog);
        last_errno = errno;
    }
    freeaddrinfo(candidates);
    if (fd < 0) {
        fprintf(stderr, "dice-auth-verifier: cannot listen on %s: %s\n", address_text,
                strerror(last_errno));
        return -1;
    }
    if (!describe_bound_address(fd, bound_text, capacity)) {
        fprintf(stderr, "dice-auth-verifier: cannot tell the bound address: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

// Failures of accept that concern only the one connection, or a passing shortage.
static bool is_transient_accept_failure(int error)
{
    return error == EAGAIN || error == EWOULDBLOCK || error == EINTR || error == ECONNABORTED ||
           error == EPROTO || error == EPERM || error == EMFILE || error == ENFILE ||
           error == ENOBUFS || error == ENOMEM;
}

int listener_accept(int listening_socket)
{
    for (;;) {
        if (io_wait(listening_socket, POLLIN, NULL) != IO_DONE) {
            return -1;
        }
        int client = accept4(listening_socket, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (client >= 0) {
            return client;
        }
        if (!is_transient_accept_failure(errno)) {
            fprintf(stderr, "dice-auth-verifier: accept failed: %s\n", strerror(errno));
            return -1;
        }
        // Out of descriptors or memory: the pending connection stays queued, so pause instead
        // of spinning on it.
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            if (io_sleep(100) != IO_DONE) {
                return -1;
            }
        }
    }
}
