// Command line of dice-auth-verifier.
#ifndef DICE_AUTH_VERIFIER_OPTIONS_H
#define DICE_AUTH_VERIFIER_OPTIONS_H

#include <stdbool.h>

// One planned answer of --sequence.
enum scripted_kind {
    SCRIPTED_VERIFY,    // verify for real
    SCRIPTED_STATUS,    // answer value as the status
    SCRIPTED_HANG,      // never answer
    SCRIPTED_SLOW,      // verify for real, answering value milliseconds late
    SCRIPTED_HUGE,      // 200 with a body of value bytes
    SCRIPTED_ODD,       // 200 with a body of control and non-ASCII bytes
    SCRIPTED_TRUNCATED, // 200 that announces a body, sends half of it and closes
    SCRIPTED_REDIRECT,  // 302 to --redirect-to
};

struct scripted_answer {
    enum scripted_kind kind;
    long value;
};

enum { OPTIONS_SEQUENCE_CAPACITY = 32 };

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
    struct scripted_answer sequence[OPTIONS_SEQUENCE_CAPACITY]; // the first complete POSTs
    int sequence_length;
    const char *redirect_location;
    const char *tls_certificate_path; // NULL: plain HTTP
    const char *tls_key_path;
    const char *tls_client_ca_path; // NULL: no client certificate asked for
};

enum options_outcome { OPTIONS_RUN, OPTIONS_HELP_SHOWN, OPTIONS_INVALID };

// Fills options from the command line. Problems are reported on stderr.
enum options_outcome options_parse(int argc, char **argv, struct verifier_options *options);

#endif
