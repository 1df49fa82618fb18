/*
 * The one line per device on stdout. Tests parse it, so keys and their order are stable:
 *
 *   device=N outcome=O bytes=B sha256=HEX ms=M end=E [alert=A]         (updated/refused/mismatch)
 *   device=N outcome=hung-up bytes=B sha256=HEX ms=M end=none           (--hang-up)
 *   device=N outcome=error bytes=B sha256=HEX ms=M phase=P detail="D"
 */
#include "report.h"

#include <stdio.h>

static const char *outcome_name(enum device_outcome outcome)
{
    switch (outcome) {
    case OUTCOME_UPDATED: return "updated";
    case OUTCOME_REFUSED: return "refused";
    case OUTCOME_MISMATCH: return "mismatch";
    case OUTCOME_ERROR: return "error";
    case OUTCOME_HUNG_UP: return "hung-up";
    }
    return "error";
}

static const char *end_name(enum stream_end end)
{
    switch (end) {
    case END_CLOSE_NOTIFY: return "close_notify";
    case END_EOF: return "eof";
    case END_ALERT: return "alert";
    case END_NONE: return "none";
    }
    return "none";
}

static const char *phase_name(enum device_phase phase)
{
    switch (phase) {
    case PHASE_CONNECT: return "connect";
    case PHASE_HANDSHAKE: return "handshake";
    case PHASE_SEND: return "send";
    case PHASE_RECEIVE: return "receive";
    }
    return "connect";
}

/*
 * Writes the detail text between double quotes so that a parser can take everything up to
 * the closing quote: quotes and backslashes inside become single quotes and slashes, control
 * characters (the multi-line verification report of mbedTLS) become spaces.
 */
static void print_quoted_detail(const char *detail)
{
    putchar('"');
    for (const char *character = detail; *character != '\0'; character++) {
        unsigned char byte = (unsigned char) *character;
        if (byte == '"') {
            byte = '\'';
        } else if (byte == '\\') {
            byte = '/';
        } else if (byte < 0x20 || byte == 0x7f) {
            byte = ' ';
        }
        putchar(byte);
    }
    putchar('"');
}

void print_result(const struct device_result *result)
{
    /* One lock for the whole line so lines of concurrent devices never interleave. */
    flockfile(stdout);
    printf("device=%u outcome=%s bytes=%llu sha256=", result->device_number,
           outcome_name(result->outcome), result->byte_count);
    for (size_t index = 0; index < SHA256_LENGTH; index++) {
        printf("%02x", result->sha256[index]);
    }
    printf(" ms=%llu max_read=%llu", result->elapsed_ms, result->largest_read);
    if (result->outcome == OUTCOME_ERROR) {
        printf(" phase=%s detail=", phase_name(result->phase));
        print_quoted_detail(result->detail);
    } else {
        printf(" end=%s", end_name(result->end));
        if (result->end == END_ALERT) {
            printf(" alert=%d", result->alert_description);
        }
    }
    putchar('\n');
    fflush(stdout);
    funlockfile(stdout);
}
