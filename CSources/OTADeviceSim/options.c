/*
 * Command-line parsing for ota-device-sim.
 *
 * Long options only, as "--name value" or "--name=value". The parser is written out by hand
 * rather than with getopt_long so that abbreviations are not accepted (tests spell options in
 * full) and every message names the option it is about.
 */
#include "options.h"

#include <mbedtls/ssl.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A day: long enough for any demo, small enough that millisecond sums cannot overflow. */
#define MAX_MILLISECONDS 86400000ULL

/* TLS 1.2 records carry at most 16 KiB of plaintext; a larger piece would not be one record. */
#define MAX_CHUNK_SIZE 16384ULL

enum option_id {
    OPTION_HOST,
    OPTION_PORT,
    OPTION_CA,
    OPTION_CERT,
    OPTION_HOSTNAME,
    OPTION_OUTPUT,
    OPTION_DEVICES,
    OPTION_CHUNK,
    OPTION_PAUSE_MS,
    OPTION_DELAY_MS,
    OPTION_READ_PAUSE_MS,
    OPTION_MAX_FRAGMENT,
    OPTION_PAYLOAD,
    OPTION_READ_SIZE,
    OPTION_TIMEOUT_MS,
    OPTION_EXPECT_SHA256,
    OPTION_QUIET,
    OPTION_HELP,
    OPTION_EMPTY_RECORDS,
    OPTION_HANG_UP,
    OPTION_HANG_UP_AFTER,
    OPTION_KEY,
    OPTION_PROOF,
    OPTION_HANDSHAKE_CERT,
    OPTION_HANDSHAKE_KEY,
    OPTION_SOURCE,
};

struct option_spec {
    const char *name;
    enum option_id id;
    bool takes_value;
};

static const struct option_spec option_specs[] = {
    {"host", OPTION_HOST, true},
    {"port", OPTION_PORT, true},
    {"ca", OPTION_CA, true},
    {"cert", OPTION_CERT, true},
    {"hostname", OPTION_HOSTNAME, true},
    {"output", OPTION_OUTPUT, true},
    {"devices", OPTION_DEVICES, true},
    {"chunk", OPTION_CHUNK, true},
    {"pause-ms", OPTION_PAUSE_MS, true},
    {"delay-ms", OPTION_DELAY_MS, true},
    {"read-pause-ms", OPTION_READ_PAUSE_MS, true},
    {"max-fragment-length", OPTION_MAX_FRAGMENT, true},
    {"payload", OPTION_PAYLOAD, true},
    {"read-size", OPTION_READ_SIZE, true},
    {"timeout-ms", OPTION_TIMEOUT_MS, true},
    {"expect-sha256", OPTION_EXPECT_SHA256, true},
    {"quiet", OPTION_QUIET, false},
    {"help", OPTION_HELP, false},
    {"empty-records", OPTION_EMPTY_RECORDS, true},
    {"hang-up", OPTION_HANG_UP, true},
    {"hang-up-after", OPTION_HANG_UP_AFTER, true},
    {"key", OPTION_KEY, true},
    {"proof", OPTION_PROOF, false},
    {"handshake-cert", OPTION_HANDSHAKE_CERT, true},
    {"handshake-key", OPTION_HANDSHAKE_KEY, true},
    {"source", OPTION_SOURCE, true},
};

static const char usage_text[] =
    "usage: ota-device-sim --host HOST --port PORT --ca PINNED_SERVER_CERT.pem\n"
    "                      --cert ATTESTATION.der [options]\n"
    "\n"
    "Plays one or more ESP32 field devices against an ota-agent: TLS 1.2 to HOST:PORT, the\n"
    "server certificate checked against the pinned copy and the server name, the attestation\n"
    "certificate sent as raw DER, then the firmware image read until the connection ends.\n"
    "\n"
    "options:\n"
    "  --hostname NAME      server name checked in the certificate (default ota-agent)\n"
    "  --output PATH        write the received image here\n"
    "                       (with --devices N > 1: PATH.1 .. PATH.N)\n"
    "  --devices N          play N devices at once, each its own thread and connection\n"
    "                       (default 1, max 1000)\n"
    "  --chunk BYTES        send the certificate in pieces of this many bytes (1..16384),\n"
    "                       each its own TLS record\n"
    "  --pause-ms MS        pause before each piece after the first (default 0)\n"
    "  --delay-ms MS        wait this long after the handshake before sending (default 0)\n"
    "  --payload PATH       send this file's raw bytes instead of the certificate;\n"
    "                       --cert is then optional\n"
    "  --read-size BYTES    size of each read (default 64, as the field devices do)\n"
    "  --max-fragment-length BYTES  negotiate records of at most 512, 1024, 2048 or 4096\n"
    "                       bytes (RFC 6066); max_read= in the report shows what came\n"
    "  --read-pause-ms MS   pause before each read after the first image byte: a slow\n"
    "                       device, or (with a long pause) one that stops reading\n"
    "  --timeout-ms MS      give up on a device after this long in all (default 120000)\n"
    "  --expect-sha256 HEX  the image's expected SHA-256; a difference is outcome=mismatch\n"
    "  --empty-records N    send N zero-length records before the certificate (0..1000)\n"
    "  --hang-up HOW        end the connection instead of reading to the end: close\n"
    "                       (close_notify, then close) or reset (a TCP reset); right\n"
    "                       after sending, or with --hang-up-after once BYTES image bytes\n"
    "                       have arrived. Reported as outcome=hung-up.\n"
    "  --hang-up-after BYTES  image bytes to receive before --hang-up (default 0)\n"
    "  --proof              a device that proves possession of its key: present the\n"
    "                       --cert certificate as the TLS client certificate, signed\n"
    "                       with --key (default: a legacy device, no client certificate)\n"
    "  --key PATH           the device's private key (PEM or DER), for --proof\n"
    "  --handshake-cert PATH  present this certificate (DER or PEM) in the handshake\n"
    "                       instead of --cert, which is still what is sent as data;\n"
    "                       implies --proof\n"
    "  --handshake-key PATH  sign the handshake with this key instead of --key;\n"
    "                       implies --proof\n"
    "  --source ADDRESS     connect from this local address (e.g. 127.0.0.2)\n"
    "  --quiet              no progress on stderr\n"
    "  --help               print this text\n"
    "\n"
    "stdout: one line per device, e.g.\n"
    "  device=1 outcome=updated bytes=300000 sha256=<hex> ms=123 end=close_notify\n"
    "outcomes: updated, refused, mismatch (these carry end=close_notify|eof|alert),\n"
    "          hung-up (--hang-up; carries end=none),\n"
    "          error (carries phase=connect|handshake|send|receive and detail=\"...\").\n"
    "exit status: 0 when every device is updated, 1 otherwise, 2 for usage errors.\n";

void print_usage(FILE *stream)
{
    fputs(usage_text, stream);
}

/* Prints one usage error, prefixed with the program name and followed by a hint. */
static void complain(const char *format_text, ...) __attribute__((format(printf, 1, 2)));

static void complain(const char *format_text, ...)
{
    va_list arguments;
    va_start(arguments, format_text);
    fputs("ota-device-sim: ", stderr);
    vfprintf(stderr, format_text, arguments);
    fputs("\nTry 'ota-device-sim --help'.\n", stderr);
    va_end(arguments);
}

static const struct option_spec *find_option(const char *name, size_t name_length)
{
    for (size_t index = 0; index < sizeof option_specs / sizeof option_specs[0]; index++) {
        const char *candidate = option_specs[index].name;
        if (strlen(candidate) == name_length && strncmp(candidate, name, name_length) == 0) {
            return &option_specs[index];
        }
    }
    return NULL;
}

/* Accepts decimal digits only: no sign, no blanks, no suffix, within [minimum, maximum]. */
static bool parse_number(const char *option_name, const char *text,
                         unsigned long long minimum, unsigned long long maximum,
                         unsigned long long *number)
{
    char *end = NULL;
    errno = 0;
    unsigned long long parsed = strtoull(text, &end, 10);
    bool well_formed = text[0] >= '0' && text[0] <= '9' && *end == '\0' && errno == 0;
    if (!well_formed || parsed < minimum || parsed > maximum) {
        complain("--%s must be a whole number from %llu to %llu (got '%s')",
                 option_name, minimum, maximum, text);
        return false;
    }
    *number = parsed;
    return true;
}

static int hex_digit_value(char digit)
{
    if (digit >= '0' && digit <= '9') {
        return digit - '0';
    }
    if (digit >= 'a' && digit <= 'f') {
        return digit - 'a' + 10;
    }
    if (digit >= 'A' && digit <= 'F') {
        return digit - 'A' + 10;
    }
    return -1;
}

static bool parse_sha256(const char *text, unsigned char digest[SHA256_LENGTH])
{
    if (strlen(text) != 2 * SHA256_LENGTH) {
        return false;
    }
    for (size_t index = 0; index < SHA256_LENGTH; index++) {
        int high = hex_digit_value(text[2 * index]);
        int low = hex_digit_value(text[2 * index + 1]);
        if (high < 0 || low < 0) {
            return false;
        }
        digest[index] = (unsigned char) (high * 16 + low);
    }
    return true;
}

/* Options whose value is a string kept as given; empty strings are refused. */
static bool apply_text_option(const struct option_spec *spec, const char *value,
                              struct sim_options *options)
{
    if (value[0] == '\0') {
        complain("--%s needs a non-empty value", spec->name);
        return false;
    }
    switch (spec->id) {
    case OPTION_HOST: options->host = value; break;
    case OPTION_CA: options->trusted_ca_path = value; break;
    case OPTION_CERT: options->certificate_path = value; break;
    case OPTION_HOSTNAME: options->server_name = value; break;
    case OPTION_OUTPUT: options->output_path = value; break;
    case OPTION_PAYLOAD: options->payload_path = value; break;
    case OPTION_KEY: options->key_path = value; break;
    case OPTION_HANDSHAKE_CERT: options->handshake_certificate_path = value; break;
    case OPTION_HANDSHAKE_KEY: options->handshake_key_path = value; break;
    case OPTION_SOURCE: options->source_address = value; break;
    default: break;
    }
    return true;
}

/* Options whose value is a number; each has the range it makes sense in. */
static bool apply_number_option(const struct option_spec *spec, const char *value,
                                struct sim_options *options)
{
    unsigned long long number = 0;
    switch (spec->id) {
    case OPTION_PORT:
        if (!parse_number(spec->name, value, 1, 65535, &number)) {
            return false;
        }
        options->port = value;
        return true;
    case OPTION_DEVICES:
        if (!parse_number(spec->name, value, 1, MAX_DEVICES, &number)) {
            return false;
        }
        options->device_count = (unsigned) number;
        return true;
    case OPTION_CHUNK:
        if (!parse_number(spec->name, value, 1, MAX_CHUNK_SIZE, &number)) {
            return false;
        }
        options->chunk_size = (size_t) number;
        return true;
    case OPTION_READ_SIZE:
        if (!parse_number(spec->name, value, 1, MAX_READ_SIZE, &number)) {
            return false;
        }
        options->read_size = (size_t) number;
        return true;
    case OPTION_EMPTY_RECORDS:
        if (!parse_number(spec->name, value, 0, MAX_EMPTY_RECORDS, &number)) {
            return false;
        }
        options->empty_records = (unsigned) number;
        return true;
    case OPTION_HANG_UP_AFTER:
        return parse_number(spec->name, value, 0, ULLONG_MAX, &options->hang_up_after);
    default:
        break;
    }
    return false;
}

static bool apply_milliseconds_option(const struct option_spec *spec, const char *value,
                                      struct sim_options *options)
{
    unsigned long long minimum = spec->id == OPTION_TIMEOUT_MS ? 1 : 0;
    unsigned long long number = 0;
    if (!parse_number(spec->name, value, minimum, MAX_MILLISECONDS, &number)) {
        return false;
    }
    switch (spec->id) {
    case OPTION_PAUSE_MS: options->pause_ms = (unsigned) number; break;
    case OPTION_DELAY_MS: options->delay_ms = (unsigned) number; break;
    case OPTION_READ_PAUSE_MS: options->read_pause_ms = (unsigned) number; break;
    case OPTION_TIMEOUT_MS: options->timeout_ms = (unsigned) number; break;
    default: break;
    }
    return true;
}

/* RFC 6066 codes for the four lengths a client may ask for. */
static bool apply_fragment_option(const struct option_spec *spec, const char *value,
                                  struct sim_options *options)
{
    static const struct { const char *text; int code; } lengths[] = {
        {"512", MBEDTLS_SSL_MAX_FRAG_LEN_512}, {"1024", MBEDTLS_SSL_MAX_FRAG_LEN_1024},
        {"2048", MBEDTLS_SSL_MAX_FRAG_LEN_2048}, {"4096", MBEDTLS_SSL_MAX_FRAG_LEN_4096},
    };
    for (size_t index = 0; index < sizeof lengths / sizeof lengths[0]; index++) {
        if (strcmp(value, lengths[index].text) == 0) {
            options->max_fragment_code = lengths[index].code;
            return true;
        }
    }
    complain("--%s must be 512, 1024, 2048 or 4096 (got '%s')", spec->name, value);
    return false;
}

static bool apply_hang_up_option(const struct option_spec *spec, const char *value,
                                 struct sim_options *options)
{
    if (strcmp(value, "close") == 0) {
        options->hang_up = HANG_UP_CLOSE;
        return true;
    }
    if (strcmp(value, "reset") == 0) {
        options->hang_up = HANG_UP_RESET;
        return true;
    }
    complain("--%s must be close or reset (got '%s')", spec->name, value);
    return false;
}

static bool apply_option(const struct option_spec *spec, const char *value,
                         struct sim_options *options)
{
    switch (spec->id) {
    case OPTION_HOST: case OPTION_CA: case OPTION_CERT: case OPTION_HOSTNAME:
    case OPTION_OUTPUT: case OPTION_PAYLOAD: case OPTION_KEY: case OPTION_HANDSHAKE_CERT:
    case OPTION_HANDSHAKE_KEY: case OPTION_SOURCE:
        return apply_text_option(spec, value, options);
    case OPTION_PROOF:
        options->proof = true;
        return true;
    case OPTION_PORT: case OPTION_DEVICES: case OPTION_CHUNK: case OPTION_READ_SIZE:
    case OPTION_EMPTY_RECORDS: case OPTION_HANG_UP_AFTER:
        return apply_number_option(spec, value, options);
    case OPTION_HANG_UP:
        return apply_hang_up_option(spec, value, options);
    case OPTION_PAUSE_MS: case OPTION_DELAY_MS: case OPTION_TIMEOUT_MS:
    case OPTION_READ_PAUSE_MS:
        return apply_milliseconds_option(spec, value, options);
    case OPTION_MAX_FRAGMENT:
        return apply_fragment_option(spec, value, options);
    case OPTION_EXPECT_SHA256:
        if (!parse_sha256(value, options->expected_sha256)) {
            complain("--%s must be 64 hexadecimal digits (got '%s')", spec->name, value);
            return false;
        }
        options->has_expected_sha256 = true;
        return true;
    case OPTION_QUIET:
        options->quiet = true;
        return true;
    case OPTION_HELP:
        return true;
    }
    return false;
}

static void set_defaults(struct sim_options *options)
{
    memset(options, 0, sizeof *options);
    options->server_name = "ota-agent";
    options->device_count = 1;
    options->read_size = 64;
    options->timeout_ms = 120000;
}

/* --proof needs a certificate to present and a key to sign with. */
static bool check_proof_options(struct sim_options *options)
{
    if (options->handshake_certificate_path != NULL || options->handshake_key_path != NULL) {
        options->proof = true;
    }
    if (!options->proof) {
        if (options->key_path != NULL) {
            complain("--key needs --proof (a legacy device presents no client certificate)");
            return false;
        }
        return true;
    }
    if (options->handshake_certificate_path == NULL && options->certificate_path == NULL) {
        complain("--proof needs --cert or --handshake-cert: the certificate to present");
        return false;
    }
    if (options->handshake_key_path == NULL && options->key_path == NULL) {
        complain("--proof needs --key or --handshake-key: the key that signs the handshake");
        return false;
    }
    return true;
}

static bool check_required(struct sim_options *options)
{
    const char *missing = NULL;
    if (options->host == NULL) {
        missing = "host";
    } else if (options->port == NULL) {
        missing = "port";
    } else if (options->trusted_ca_path == NULL) {
        missing = "ca";
    } else if (options->certificate_path == NULL && options->payload_path == NULL) {
        missing = "cert";
    }
    if (missing == NULL && options->hang_up_after > 0 && options->hang_up == HANG_UP_NONE) {
        complain("--hang-up-after needs --hang-up");
        return false;
    }
    if (missing != NULL) {
        complain("--%s is required", missing);
        return false;
    }
    return check_proof_options(options);
}

/*
 * Finds the value of an option that takes one: after '=' in the same argument, or the next
 * argument. A next argument that looks like an option is not taken as the value, since that
 * almost always means the value was forgotten ("--host --port 4433").
 */
static bool take_value(const struct option_spec *spec, const char *equals_sign,
                       int argument_count, char **arguments, int *index, const char **value)
{
    if (!spec->takes_value) {
        if (equals_sign != NULL) {
            complain("--%s takes no value", spec->name);
            return false;
        }
        *value = NULL;
        return true;
    }
    if (equals_sign != NULL) {
        *value = equals_sign + 1;
        return true;
    }
    if (*index + 1 >= argument_count || strncmp(arguments[*index + 1], "--", 2) == 0) {
        complain("--%s needs a value", spec->name);
        return false;
    }
    *index += 1;
    *value = arguments[*index];
    return true;
}

enum parse_result parse_options(int argument_count, char **arguments,
                                struct sim_options *options)
{
    set_defaults(options);
    for (int index = 1; index < argument_count; index++) {
        const char *argument = arguments[index];
        if (strncmp(argument, "--", 2) != 0 || argument[2] == '\0') {
            complain("unexpected argument '%s' (all options are long, like --host)", argument);
            return PARSE_FAILED;
        }
        const char *name = argument + 2;
        const char *equals_sign = strchr(name, '=');
        size_t name_length = equals_sign != NULL ? (size_t) (equals_sign - name) : strlen(name);
        const struct option_spec *spec = find_option(name, name_length);
        if (spec == NULL) {
            complain("unknown option '%s'", argument);
            return PARSE_FAILED;
        }
        const char *value = NULL;
        if (!take_value(spec, equals_sign, argument_count, arguments, &index, &value) ||
            !apply_option(spec, value, options)) {
            return PARSE_FAILED;
        }
        if (spec->id == OPTION_HELP) {
            print_usage(stdout);
            return PARSE_HELP;
        }
    }
    return check_required(options) ? PARSE_OK : PARSE_FAILED;
}
