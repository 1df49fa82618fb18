/*
 * What happened to one simulated device, and its line on stdout.
 */
#ifndef OTA_DEVICE_SIM_REPORT_H
#define OTA_DEVICE_SIM_REPORT_H

#include "options.h"

enum device_outcome {
    OUTCOME_UPDATED,   /* bytes received and the stream ended cleanly */
    OUTCOME_REFUSED,   /* handshake done, no bytes, then a clean end or an alert */
    OUTCOME_MISMATCH,  /* updated, but not with the image --expect-sha256 names */
    OUTCOME_ERROR,     /* anything else: see phase and detail */
    OUTCOME_HUNG_UP,   /* ended the connection itself, as --hang-up asked */
};

enum stream_end {
    END_NONE,
    END_CLOSE_NOTIFY,
    END_EOF,           /* plain TCP end of stream without close_notify */
    END_ALERT,         /* a fatal alert from the server */
};

enum device_phase {
    PHASE_CONNECT,
    PHASE_HANDSHAKE,
    PHASE_SEND,
    PHASE_RECEIVE,
};

enum { DETAIL_CAPACITY = 512 };

struct device_result {
    unsigned device_number;       /* 1-based */
    enum device_outcome outcome;
    enum stream_end end;
    int alert_description;        /* the TLS alert number when end is END_ALERT */
    enum device_phase phase;      /* where an error happened */
    unsigned long long byte_count;
    unsigned long long largest_read; /* the most one read returned: one record's payload at most */
    unsigned char sha256[SHA256_LENGTH];
    unsigned long long elapsed_ms;
    char detail[DETAIL_CAPACITY]; /* for errors: the mbedTLS or system message */
};

/* Prints the device's line on stdout and flushes it; safe to call from several threads. */
void print_result(const struct device_result *result);

#endif
