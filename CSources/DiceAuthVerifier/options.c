// Command line parsing: every value is checked here so that the server never meets a nonsense one.
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static const char usage_text[] =
    "usage: dice-auth-verifier --roots DIR [options]\n"
    "\n"
    "A Dice-Auth compatible attestation verifier for tests and demos. Answers one HTTP/1.1\n"
    "connection at a time: POST a PEM certificate, get 200 if it chains to a root in DIR\n"
    "(unknown critical extensions and leaf key usage tolerated, as DICE certificates need),\n"
    "401 if it does not.\n"
    "\n"
    "  --roots DIR          trusted roots: every *.crt and *.pem file in DIR (PEM or DER)\n"
    "  --listen ADDR:PORT   default 127.0.0.1:0 (port 0 = ephemeral); IPv6 as [::1]:PORT\n"
    "  --backlog N          listen queue (default 16)\n"
    "  --fail-first N       answer the first N POSTs that carry a complete body with\n"
    "                       --fail-status, whatever the body\n"
    "  --fail-status CODE   status for those (default 500)\n"
    "  --retry-after SECS   add Retry-After: SECS to the answers of --fail-first and --status\n"
    "  --status CODE        answer every POST with CODE, ignoring verification\n"
    "  --delay-ms MS        wait this long before answering each request\n"
    "  --hang               read the request, then never answer (until the client closes)\n"
    "  --max-requests N     exit 0 after answering N requests (default: until SIGINT/SIGTERM)\n"
    "  --help               show this text\n"
    "\n"
    "stdout: one line 'listening ADDR:PORT' once the socket listens.\n"
    "stderr: one line per request: request=N method=M status=S reason=\"...\" subject=\"...\"\n";

enum option_code {
    OPTION_ROOTS = 256,
    OPTION_LISTEN,
    OPTION_BACKLOG,
    OPTION_FAIL_FIRST,
    OPTION_FAIL_STATUS,
    OPTION_RETRY_AFTER,
    OPTION_STATUS,
    OPTION_DELAY_MS,
    OPTION_HANG,
    OPTION_MAX_REQUESTS,
    OPTION_HELP,
};

static const struct option long_options[] = {
    {"roots", required_argument, NULL, OPTION_ROOTS},
    {"listen", required_argument, NULL, OPTION_LISTEN},
    {"backlog", required_argument, NULL, OPTION_BACKLOG},
    {"fail-first", required_argument, NULL, OPTION_FAIL_FIRST},
    {"fail-status", required_argument, NULL, OPTION_FAIL_STATUS},
    {"retry-after", required_argument, NULL, OPTION_RETRY_AFTER},
    {"status", required_argument, NULL, OPTION_STATUS},
    {"delay-ms", required_argument, NULL, OPTION_DELAY_MS},
    {"hang", no_argument, NULL, OPTION_HANG},
    {"max-requests", required_argument, NULL, OPTION_MAX_REQUESTS},
    {"help", no_argument, NULL, OPTION_HELP},
    {NULL, 0, NULL, 0},
};

// Parses a whole decimal number within [minimum, maximum]; anything else is a usage error.
static bool parse_number(const char *option_name, const char *text, long minimum, long maximum,
                         long *value)
{
    char *end = NULL;
    errno = 0;
    long parsed = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || parsed < minimum || parsed > maximum) {
        fprintf(stderr, "dice-auth-verifier: --%s wants a number from %ld to %ld, not '%s'\n",
                option_name, minimum, maximum, text);
        return false;
    }
    *value = parsed;
    return true;
}

// Final statuses only: a 1xx answer would leave the client waiting for another one.
static bool parse_status(const char *option_name, const char *text, int *status)
{
    long parsed = 0;
    if (!parse_number(option_name, text, 200, 599, &parsed)) {
        return false;
    }
    *status = (int)parsed;
    return true;
}

static void set_defaults(struct verifier_options *options)
{
    *options = (struct verifier_options){
        .roots_directory = NULL,
        .listen_address = "127.0.0.1:0",
        .backlog = 16,
        .fail_first_count = 0,
        .fail_status = 500,
        .retry_after_seconds = -1,
        .forced_status = 0,
        .delay_milliseconds = 0,
        .hang = false,
        .max_requests = 0,
    };
}

// Applies one recognised option; returns false on a bad value.
static bool apply_option(int code, const char *value, struct verifier_options *options)
{
    long number = 0;
    switch (code) {
    case OPTION_ROOTS:
        options->roots_directory = value;
        return true;
    case OPTION_LISTEN:
        options->listen_address = value;
        return true;
    case OPTION_BACKLOG:
        if (!parse_number("backlog", value, 1, 65535, &number)) {
            return false;
        }
        options->backlog = (int)number;
        return true;
    case OPTION_FAIL_FIRST:
        return parse_number("fail-first", value, 0, 1000000000L, &options->fail_first_count);
    case OPTION_FAIL_STATUS:
        return parse_status("fail-status", value, &options->fail_status);
    case OPTION_RETRY_AFTER:
        return parse_number("retry-after", value, 0, 1000000000L, &options->retry_after_seconds);
    case OPTION_STATUS:
        return parse_status("status", value, &options->forced_status);
    case OPTION_DELAY_MS:
        return parse_number("delay-ms", value, 0, 3600000L, &options->delay_milliseconds);
    case OPTION_HANG:
        options->hang = true;
        return true;
    case OPTION_MAX_REQUESTS:
        return parse_number("max-requests", value, 1, 1000000000L, &options->max_requests);
    default:
        return false;
    }
}

enum options_outcome options_parse(int argc, char **argv, struct verifier_options *options)
{
    set_defaults(options);
    int code = 0;
    while ((code = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        if (code == OPTION_HELP) {
            fputs(usage_text, stdout);
            return OPTIONS_HELP_SHOWN;
        }
        if (code == '?' || !apply_option(code, optarg, options)) {
            fputs("dice-auth-verifier: see --help\n", stderr);
            return OPTIONS_INVALID;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dice-auth-verifier: unexpected argument '%s'; see --help\n", argv[optind]);
        return OPTIONS_INVALID;
    }
    if (options->roots_directory == NULL) {
        fputs("dice-auth-verifier: --roots DIR is required; see --help\n", stderr);
        return OPTIONS_INVALID;
    }
    return OPTIONS_RUN;
}
