// Command line of dice-auth-verifier.
#ifndef DICE_AUTH_VERIFIER_OPTIONS_H
#define DICE_AUTH_VERIFIER_OPTIONS_H

#include <stdbool.h>

struct verifier_options {
    const char *roots_directory;
    const char *listen_address;
    int backlog;
    long fail_first_count;
    int fail_status;
    long retry_after_seconds; // negative: no Retry-After header
    int forced_status;        // 0: verify for real
    long delay_milliseconds;
    bool hang;
    long max_requests; // 0: serve until SIGINT or SIGTERM
};

enum options_outcome { OPTIONS_RUN, OPTIONS_HELP_SHOWN, OPTIONS_INVALID };

// Fills options from the command line. Problems are reported on stderr.
enum options_outcome options_parse(int argc, char **argv, struct verifier_options *options);

#endif
