// Command line parsing: every value is checked here so that the server never meets a nonsense one.
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    "  --sequence LIST      answer the first complete POSTs as listed (comma-separated), then\n"
    "                       as usual; not with --fail-first or --hang. Items:\n"
    "                         verify      verify for real\n"
    "                         CODE        that status (with --retry-after's header if given)\n"
    "                         hang        never answer (until the client closes)\n"
    "                         slow=MS     verify for real, answering MS milliseconds late\n"
    "                         huge=BYTES  200 with a body of BYTES bytes (up to 64 MiB)\n"
    "                         odd         200 with a body of control and non-ASCII bytes\n"
    "                         truncated   200 announcing a body, sending half of it, closing\n"
    "                         redirect    302 with Location: --redirect-to\n"
    "  --redirect-to URL    the Location of 'redirect' answers\n"
    "  --tls-cert PEM       serve https with this certificate (chain allowed) ...\n"
    "  --tls-key PEM        ... and this key (both or neither)\n"
    "  --tls-client-ca PEM  require a client certificate chaining to a CA in this file\n"
    "  --help               show this text\n"
    "\n"
    "stdout: one line 'listening ADDR:PORT' once the socket listens.\n"
    "stderr: one line per request: request=N method=M status=S reason=\"...\" subject=\"...\"\n"
    "        (and client=\"...\" under --tls-client-ca); a failed TLS handshake is a line\n"
    "        'connection: TLS handshake failed: ...'.\n";

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
    OPTION_SEQUENCE,
    OPTION_REDIRECT_TO,
    OPTION_TLS_CERT,
    OPTION_TLS_KEY,
    OPTION_TLS_CLIENT_CA,
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
    {"sequence", required_argument, NULL, OPTION_SEQUENCE},
    {"redirect-to", required_argument, NULL, OPTION_REDIRECT_TO},
    {"tls-cert", required_argument, NULL, OPTION_TLS_CERT},
    {"tls-key", required_argument, NULL, OPTION_TLS_KEY},
    {"tls-client-ca", required_argument, NULL, OPTION_TLS_CLIENT_CA},
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

// One item of --sequence: a word, optionally "=NUMBER", or a status code.
static bool parse_sequence_item(const char *item, struct scripted_answer *answer)
{
    static const struct {
        const char *word;
        enum scripted_kind kind;
        long maximum; // 0: the word takes no number
    } words[] = {
        {"verify", SCRIPTED_VERIFY, 0},   {"hang", SCRIPTED_HANG, 0},
        {"slow", SCRIPTED_SLOW, 3600000L}, {"huge", SCRIPTED_HUGE, 64L * 1024 * 1024},
        {"odd", SCRIPTED_ODD, 0},         {"truncated", SCRIPTED_TRUNCATED, 0},
        {"redirect", SCRIPTED_REDIRECT, 0},
    };
    const char *equals = strchr(item, '=');
    size_t word_length = equals != NULL ? (size_t)(equals - item) : strlen(item);
    for (size_t index = 0; index < sizeof words / sizeof words[0]; index++) {
        if (strlen(words[index].word) != word_length ||
            strncmp(item, words[index].word, word_length) != 0) {
            continue;
        }
        answer->kind = words[index].kind;
        answer->value = 0;
        if ((equals != NULL) != (words[index].maximum > 0)) {
            fprintf(stderr, "dice-auth-verifier: --sequence item '%s': %s\n", item,
                    equals != NULL ? "takes no value" : "needs =NUMBER");
            return false;
        }
        return equals == NULL ||
               parse_number("sequence", equals + 1, 1, words[index].maximum, &answer->value);
    }
    int status = 0;
    if (equals != NULL || !parse_status("sequence", item, &status)) {
        return false;
    }
    *answer = (struct scripted_answer){.kind = SCRIPTED_STATUS, .value = status};
    return true;
}

static bool parse_sequence(const char *text, struct verifier_options *options)
{
    char copy[1024];
    if (strlen(text) >= sizeof copy || text[0] == '\0') {
        fputs("dice-auth-verifier: --sequence wants a list of up to 1023 characters\n", stderr);
        return false;
    }
    snprintf(copy, sizeof copy, "%s", text);
    options->sequence_length = 0;
    char *cursor = copy;
    char *item = NULL;
    while ((item = strsep(&cursor, ",")) != NULL) {
        if (options->sequence_length == OPTIONS_SEQUENCE_CAPACITY) {
            fprintf(stderr, "dice-auth-verifier: --sequence takes at most %d items\n",
                    OPTIONS_SEQUENCE_CAPACITY);
            return false;
        }
        if (!parse_sequence_item(item, &options->sequence[options->sequence_length])) {
            return false;
        }
        options->sequence_length++;
    }
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
        .sequence_length = 0,
        .redirect_location = NULL,
        .tls_certificate_path = NULL,
        .tls_key_path = NULL,
        .tls_client_ca_path = NULL,
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
    case OPTION_SEQUENCE:
        return parse_sequence(value, options);
    case OPTION_REDIRECT_TO:
        options->redirect_location = value;
        return true;
    case OPTION_TLS_CERT:
        options->tls_certificate_path = value;
        return true;
    case OPTION_TLS_KEY:
        options->tls_key_path = value;
        return true;
    case OPTION_TLS_CLIENT_CA:
        options->tls_client_ca_path = value;
        return true;
    default:
        return false;
    }
}

static bool sequence_has(const struct verifier_options *options, enum scripted_kind kind)
{
    for (int index = 0; index < options->sequence_length; index++) {
        if (options->sequence[index].kind == kind) {
            return true;
        }
    }
    return false;
}

// Options that make no sense together; NULL when there are none.
static const char *find_conflict(const struct verifier_options *options)
{
    if (options->sequence_length > 0 && (options->fail_first_count > 0 || options->hang)) {
        return "--sequence goes with neither --fail-first nor --hang";
    }
    if (sequence_has(options, SCRIPTED_REDIRECT) != (options->redirect_location != NULL)) {
        return "--redirect-to and a 'redirect' item of --sequence go together";
    }
    if (options->redirect_location != NULL && strpbrk(options->redirect_location, "\r\n") != NULL) {
        return "--redirect-to may not contain line breaks";
    }
    if ((options->tls_certificate_path == NULL) != (options->tls_key_path == NULL)) {
        return "--tls-cert and --tls-key go together";
    }
    if (options->tls_client_ca_path != NULL && options->tls_certificate_path == NULL) {
        return "--tls-client-ca needs --tls-cert and --tls-key";
    }
    return NULL;
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
    const char *conflict = find_conflict(options);
    if (conflict != NULL) {
        fprintf(stderr, "dice-auth-verifier: %s; see --help\n", conflict);
        return OPTIONS_INVALID;
    }
    return OPTIONS_RUN;
}
