// Plain and TLS connections behind one interface; see channel.h.
#include "channel.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// OpenSSL's error queue as one line ("what failed: library reason"), then cleared.
static void describe_tls_error(const char *what, char *text, size_t capacity)
{
    unsigned long error = ERR_get_error();
    char detail[256] = "no detail";
    if (error != 0) {
        ERR_error_string_n(error, detail, sizeof detail);
    }
    snprintf(text, capacity, "%s: %s", what, detail);
    ERR_clear_error();
}

static void report_tls_error(const char *what)
{
    char text[320];
    describe_tls_error(what, text, sizeof text);
    fprintf(stderr, "dice-auth-verifier: %s\n", text);
}

SSL_CTX *channel_tls_context_new(const char *certificate_path, const char *key_path,
                                 const char *client_ca_path)
{
    SSL_CTX *context = SSL_CTX_new(TLS_server_method());
    if (context == NULL) {
        report_tls_error("SSL_CTX_new");
        return NULL;
    }
    // curl may close without close_notify once it has its answer; that is an end, not an error.
    SSL_CTX_set_options(context, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (SSL_CTX_use_certificate_chain_file(context, certificate_path) != 1) {
        report_tls_error(certificate_path);
        SSL_CTX_free(context);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(context, key_path, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(context) != 1) {
        report_tls_error(key_path);
        SSL_CTX_free(context);
        return NULL;
    }
    if (client_ca_path == NULL) {
        return context;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca_path);
    if (names == NULL || SSL_CTX_load_verify_locations(context, client_ca_path, NULL) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        report_tls_error(client_ca_path);
        SSL_CTX_free(context);
        return NULL;
    }
    SSL_CTX_set_client_CA_list(context, names);
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return context;
}

// Turns a TLS call's failure into what to wait for, or a final result.
static enum io_result wait_for_tls(struct channel *channel, int returned,
                                   const struct timespec *deadline)
{
    switch (SSL_get_error(channel->tls, returned)) {
    case SSL_ERROR_WANT_READ:
        return io_wait(channel->fd, POLLIN, deadline);
    case SSL_ERROR_WANT_WRITE:
        return io_wait(channel->fd, POLLOUT, deadline);
    case SSL_ERROR_ZERO_RETURN:
        return IO_END_OF_STREAM;
    default:
        return IO_FAILED;
    }
}

static void note_peer_subject(struct channel *channel)
{
    X509 *peer = SSL_get0_peer_certificate(channel->tls);
    if (peer != NULL) {
        X509_NAME_oneline(X509_get_subject_name(peer), channel->peer_subject,
                          (int)sizeof channel->peer_subject);
    }
}

bool channel_open(struct channel *channel, int fd, SSL_CTX *context,
                  const struct timespec *deadline, char *reason, size_t capacity)
{
    *channel = (struct channel){.fd = fd, .tls = NULL};
    if (context == NULL) {
        return true;
    }
    channel->tls = SSL_new(context);
    if (channel->tls == NULL || SSL_set_fd(channel->tls, fd) != 1) {
        describe_tls_error("SSL_new", reason, capacity);
        return false;
    }
    for (;;) {
        ERR_clear_error();
        int returned = SSL_accept(channel->tls);
        if (returned == 1) {
            note_peer_subject(channel);
            return true;
        }
        enum io_result waited = wait_for_tls(channel, returned, deadline);
        if (waited != IO_DONE) {
            const char *what = waited == IO_TIMED_OUT ? "handshake timeout" : "SSL_accept";
            describe_tls_error(what, reason, capacity);
            return false;
        }
    }
}

enum io_result channel_receive(struct channel *channel, void *buffer, size_t capacity,
                               const struct timespec *deadline, size_t *received)
{
    if (channel->tls == NULL) {
        return io_receive(channel->fd, buffer, capacity, deadline, received);
    }
    *received = 0;
    for (;;) {
        ERR_clear_error();
        int returned = SSL_read_ex(channel->tls, buffer, capacity, received);
        if (returned == 1) {
            return IO_DONE;
        }
        enum io_result waited = wait_for_tls(channel, returned, deadline);
        if (waited != IO_DONE) {
            return waited;
        }
    }
}

enum io_result channel_send_all(struct channel *channel, const void *data, size_t length,
                                const struct timespec *deadline)
{
    if (channel->tls == NULL) {
        return io_send_all(channel->fd, data, length, deadline);
    }
    const unsigned char *next = data;
    while (length > 0) {
        size_t written = 0;
        ERR_clear_error();
        int returned = SSL_write_ex(channel->tls, next, length, &written);
        if (returned == 1) {
            next += written;
            length -= written;
            continue;
        }
        enum io_result waited = wait_for_tls(channel, returned, deadline);
        if (waited != IO_DONE) {
            return waited == IO_END_OF_STREAM ? IO_FAILED : waited;
        }
    }
    return IO_DONE;
}

void channel_shut_down_sending(struct channel *channel)
{
    // After a failed handshake there is no session to close, only the alert already sent.
    if (channel->tls != NULL && SSL_is_init_finished(channel->tls)) {
        // One try: a close_notify that cannot go out at once is not worth waiting for.
        ERR_clear_error();
        SSL_shutdown(channel->tls);
        ERR_clear_error();
    }
    shutdown(channel->fd, SHUT_WR);
}

void channel_close(struct channel *channel)
{
    SSL_free(channel->tls);
    channel->tls = NULL;
    if (channel->fd >= 0) {
        close(channel->fd);
        channel->fd = -1;
    }
}
