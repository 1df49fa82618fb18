/*
 * sigpipe.c - keeping socket writes from raising SIGPIPE in any caller's process.
 *
 * mbedTLS writes through our own callback with MSG_NOSIGNAL, but OpenSSL's socket BIO (which
 * kernel TLS needs) calls write(2). A write to a socket the peer has reset raises SIGPIPE,
 * whose default action kills the process: an embedding program, or a test runner. So each
 * write runs with SIGPIPE blocked on the calling thread, and a SIGPIPE it raised is taken
 * off the pending set before the old mask comes back.
 */

#include <errno.h>
#include <signal.h>
#include <time.h>

#include "ota_internal.h"

/* Whether the process ignores SIGPIPE already (as the agent's CLI does): then there is
 * nothing to hold off, and the four signal-mask calls per write can be skipped. A connection
 * asks once, when it is made (a system call each time would cost more than the check saves). */
int
ota_sigpipe_ignored(void)
{
    struct sigaction current;
    return sigaction(SIGPIPE, NULL, &current) == 0 && current.sa_handler == SIG_IGN;
}

void
ota_sigpipe_block(struct ota_sigpipe_state *state, int ignored)
{
    state->skipped = ignored;
    if (state->skipped) {
        return;
    }

    sigset_t sigpipe_only;
    sigemptyset(&sigpipe_only);
    sigaddset(&sigpipe_only, SIGPIPE);

    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    state->was_pending = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &sigpipe_only, &state->old_mask);
}

void
ota_sigpipe_restore(struct ota_sigpipe_state *state)
{
    if (state->skipped) {
        return;
    }

    sigset_t sigpipe_only;
    sigemptyset(&sigpipe_only);
    sigaddset(&sigpipe_only, SIGPIPE);

    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    if (!state->was_pending && sigismember(&pending, SIGPIPE) == 1) {
        /* Ours: consume it without waiting, so restoring the mask cannot deliver it. */
        struct timespec no_wait = {0, 0};
        int saved_errno = errno;
        while (sigtimedwait(&sigpipe_only, NULL, &no_wait) < 0 && errno == EINTR) {
        }
        errno = saved_errno;
    }
    pthread_sigmask(SIG_SETMASK, &state->old_mask, NULL);
}
