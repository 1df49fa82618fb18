/*
 * The TCP side of one simulated device: connecting, and the send/receive callbacks mbedTLS
 * uses. Every wait is bounded by the device's deadline so a run can never hang.
 */
#ifndef OTA_DEVICE_SIM_TRANSPORT_H
#define OTA_DEVICE_SIM_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct transport {
    int socket_fd;          /* -1 while not connected */
    uint64_t deadline_ms;   /* on the monotonic_ms() clock */
    int last_errno;         /* errno of the last failed socket call, for messages */
    const char *source_address; /* numeric local address to connect from; NULL: any */
};

/* Milliseconds on a clock that never jumps; only differences are meaningful. */
uint64_t monotonic_ms(void);

/* Milliseconds left before the deadline, 0 once it has passed. */
uint64_t transport_remaining_ms(const struct transport *transport);

void transport_init(struct transport *transport, uint64_t deadline_ms);

/*
 * Connects to host:port (any address family), trying each address in turn until the
 * deadline. On failure writes a one-line reason into detail and returns false.
 */
bool transport_connect(struct transport *transport, const char *host, const char *port,
                       char *detail, size_t detail_size);

void transport_close(struct transport *transport);

/*
 * Closes the socket with a TCP reset instead of a FIN (SO_LINGER {1, 0}), as a device that
 * loses power or crashes mid-stream looks to its peer.
 */
void transport_reset(struct transport *transport);

/*
 * Sleeps for duration_ms or until the deadline, whichever is first.
 * Returns false when the deadline cut the sleep short.
 */
bool transport_sleep(const struct transport *transport, unsigned duration_ms);

/* mbedTLS bio callbacks; context is a struct transport. Writes never raise SIGPIPE. */
int transport_send(void *context, const unsigned char *buffer, size_t length);
int transport_receive(void *context, unsigned char *buffer, size_t length);

/* Thread-safe errno text into buffer; returns buffer or a static string. */
const char *describe_errno(int error_number, char *buffer, size_t buffer_size);

#endif
