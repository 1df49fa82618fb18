// Socket input and output with deadlines; see io.h for the signal discipline.
#include "io.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

static volatile sig_atomic_t stop_request = 0;

// The signal mask in force while waiting: the process mask without SIGINT and SIGTERM.
static sigset_t waiting_mask;

static void note_stop_request(int signal_number)
{
    stop_request = signal_number;
}

bool io_install_signal_handling(void)
{
    // A client that goes away mid-answer must cost an EPIPE, not the process.
    struct sigaction ignore = {.sa_handler = SIG_IGN};
    sigemptyset(&ignore.sa_mask);
    if (sigaction(SIGPIPE, &ignore, NULL) != 0) {
        return false;
    }
    // No SA_RESTART: a pending wait must come back with EINTR to notice the request.
    struct sigaction stop = {.sa_handler = note_stop_request};
    sigemptyset(&stop.sa_mask);
    if (sigaction(SIGINT, &stop, NULL) != 0 || sigaction(SIGTERM, &stop, NULL) != 0) {
        return false;
    }
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &stop_signals, &waiting_mask) != 0) {
        return false;
    }
    sigdelset(&waiting_mask, SIGINT);
    sigdelset(&waiting_mask, SIGTERM);
    return true;
}

bool io_stop_requested(void)
{
    return stop_request != 0;
}

int io_stop_signal(void)
{
    return (int)stop_request;
}

struct timespec io_deadline_after(long milliseconds)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += milliseconds / 1000;
    deadline.tv_nsec += (milliseconds % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000L;
    }
    return deadline;
}

// Time left until deadline; false once it has passed.
static bool time_left(const struct timespec *deadline, struct timespec *remaining)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    remaining->tv_sec = deadline->tv_sec - now.tv_sec;
    remaining->tv_nsec = deadline->tv_nsec - now.tv_nsec;
    if (remaining->tv_nsec < 0) {
        remaining->tv_sec -= 1;
        remaining->tv_nsec += 1000000000L;
    }
    return remaining->tv_sec > 0 || (remaining->tv_sec == 0 && remaining->tv_nsec > 0);
}

enum io_result io_wait(int fd, short events, const struct timespec *deadline)
{
    for (;;) {
        if (io_stop_requested()) {
            return IO_STOPPED;
        }
        struct timespec remaining;
        if (deadline != NULL && !time_left(deadline, &remaining)) {
            return IO_TIMED_OUT;
        }
        struct pollfd watched = {.fd = fd, .events = events};
        int ready = ppoll(&watched, fd >= 0 ? 1 : 0, deadline != NULL ? &remaining : NULL,
                          &waiting_mask);
        // Errors and hang-ups count as ready: the next recv or send reports them precisely.
        if (ready > 0) {
            return IO_DONE;
        }
        if (ready < 0 && errno != EINTR) {
            return IO_FAILED;
        }
    }
}

enum io_result io_receive(int fd, void *buffer, size_t capacity, const struct timespec *deadline,
                          size_t *received)
{
    *received = 0;
    for (;;) {
        ssize_t count = recv(fd, buffer, capacity, MSG_DONTWAIT);
        if (count > 0) {
            *received = (size_t)count;
            return IO_DONE;
        }
        if (count == 0) {
            return IO_END_OF_STREAM;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return IO_FAILED;
        }
        enum io_result waited = io_wait(fd, POLLIN, deadline);
        if (waited != IO_DONE) {
            return waited;
        }
    }
}

enum io_result io_send_all(int fd, const void *data, size_t length,
                           const struct timespec *deadline)
{
    const char *next = data;
    while (length > 0) {
        ssize_t count = send(fd, next, length, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (count > 0) {
            next += count;
            length -= (size_t)count;
            continue;
        }
        if (count < 0 && errno == EINTR) {
            continue;
        }
        if (count < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            return IO_FAILED;
        }
        enum io_result waited = io_wait(fd, POLLOUT, deadline);
        if (waited != IO_DONE) {
            return waited;
        }
    }
    return IO_DONE;
}

enum io_result io_sleep(long milliseconds)
{
    struct timespec deadline = io_deadline_after(milliseconds);
    enum io_result waited = io_wait(-1, 0, &deadline);
    return waited == IO_TIMED_OUT ? IO_DONE : waited;
}
