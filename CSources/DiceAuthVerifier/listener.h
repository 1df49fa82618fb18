// The listening socket.
#ifndef DICE_AUTH_VERIFIER_LISTENER_H
#define DICE_AUTH_VERIFIER_LISTENER_H

#include <stddef.h>

// Room for "[" IPv6 "]:" port and the terminating NUL.
enum { LISTENER_ADDRESS_TEXT_CAPACITY = 64 };

// Binds to "ADDR:PORT" ("[ADDR]:PORT" for IPv6) and listens. Returns the socket and writes the
// address actually bound (with the real port when PORT was 0) into bound_text; returns -1 after
// reporting the problem on stderr.
int listener_open(const char *address_text, int backlog, char *bound_text, size_t capacity);

// Waits for the next client. Returns its socket, or -1 on a stop request or a failure that is
// not transient (reported on stderr).
int listener_accept(int listening_socket);

#endif
