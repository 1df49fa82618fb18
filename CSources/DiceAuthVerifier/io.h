// Socket input and output with deadlines, and the stop request of SIGINT and SIGTERM.
//
// SIGINT and SIGTERM stay blocked except while this module waits (ppoll with the signals let
// through), so a stop request can never slip in between a check of the flag and a wait.
#ifndef DICE_AUTH_VERIFIER_IO_H
#define DICE_AUTH_VERIFIER_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum io_result {
    IO_DONE,
    IO_END_OF_STREAM, // the peer closed its side
    IO_TIMED_OUT,
    IO_STOPPED, // SIGINT or SIGTERM arrived
    IO_FAILED,  // errno tells why
};

// Ignores SIGPIPE and routes SIGINT and SIGTERM to the stop request. Returns false on failure.
bool io_install_signal_handling(void);
bool io_stop_requested(void);
// The signal that requested the stop; 0 while none did.
int io_stop_signal(void);

// A point on the monotonic clock, milliseconds from now.
struct timespec io_deadline_after(long milliseconds);

// Waits until fd is ready for events (POLLIN, POLLOUT), the deadline passes (NULL: never) or a
// stop is requested. fd may be negative to just wait for the deadline.
enum io_result io_wait(int fd, short events, const struct timespec *deadline);

// Receives at least one byte (at most capacity) into buffer.
enum io_result io_receive(int fd, void *buffer, size_t capacity, const struct timespec *deadline,
                          size_t *received);

// Sends all of data.
enum io_result io_send_all(int fd, const void *data, size_t length,
                           const struct timespec *deadline);

// Sleeps, returning early with IO_STOPPED on a stop request.
enum io_result io_sleep(long milliseconds);

#endif
