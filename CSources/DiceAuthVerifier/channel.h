// One client connection, in plain TCP or in TLS (OpenSSL libssl), with the deadlines of io.h.
//
// The HTTP code reads and writes through a channel only, so that plain and https serving share
// every line above the transport.
#ifndef DICE_AUTH_VERIFIER_CHANNEL_H
#define DICE_AUTH_VERIFIER_CHANNEL_H

#include "io.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

struct channel {
    int fd;   // owned: channel_close closes it
    SSL *tls; // owned; NULL for plain TCP
    char peer_subject[256]; // the client certificate's subject under mutual TLS, else empty
};

// A server context for https: certificate_path and key_path are PEM files; with client_ca_path
// (may be NULL) every client must present a certificate that chains to a CA in that file.
// Returns NULL after reporting the problem on stderr.
SSL_CTX *channel_tls_context_new(const char *certificate_path, const char *key_path,
                                 const char *client_ca_path);

// Takes ownership of fd. With a context, runs the TLS handshake before the deadline; on
// failure writes why into reason and returns false (close the channel all the same).
bool channel_open(struct channel *channel, int fd, SSL_CTX *context,
                  const struct timespec *deadline, char *reason, size_t capacity);

enum io_result channel_receive(struct channel *channel, void *buffer, size_t capacity,
                               const struct timespec *deadline, size_t *received);

enum io_result channel_send_all(struct channel *channel, const void *data, size_t length,
                                const struct timespec *deadline);

// Ends our sending side (close_notify first under TLS) without closing the socket.
void channel_shut_down_sending(struct channel *channel);

// Frees the TLS state and closes the socket.
void channel_close(struct channel *channel);

#endif
