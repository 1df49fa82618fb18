/*
 * Command-line options of ota-device-sim.
 */
#ifndef OTA_DEVICE_SIM_OPTIONS_H
#define OTA_DEVICE_SIM_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum { SHA256_LENGTH = 32 };

/* Upper bounds that keep a run's memory and thread count sane. */
enum {
    MAX_DEVICES = 1000,
    MAX_READ_SIZE = 65536,
    MAX_EMPTY_RECORDS = 1000,
};

/* How a device ends the connection itself when --hang-up asks it to. */
enum hang_up_mode {
    HANG_UP_NONE,    /* read the image until the server ends the stream */
    HANG_UP_CLOSE,   /* close_notify, then close the socket */
    HANG_UP_RESET,   /* close the socket with a TCP reset (SO_LINGER {1, 0}) */
};

struct sim_options {
    const char *host;
    const char *port;
    const char *trusted_ca_path;
    const char *certificate_path;
    const char *server_name;
    const char *output_path;     /* NULL: the image is hashed but not kept */
    const char *payload_path;    /* NULL: send the attestation certificate */
    unsigned device_count;
    size_t chunk_size;           /* 0: send the certificate in as few records as possible */
    unsigned pause_ms;
    unsigned delay_ms;
    size_t read_size;
    unsigned read_pause_ms;      /* pause before each read once data has arrived */
    int max_fragment_code;       /* MBEDTLS_SSL_MAX_FRAG_LEN_*: NONE unless asked for */
    unsigned timeout_ms;
    bool has_expected_sha256;
    unsigned char expected_sha256[SHA256_LENGTH];
    bool quiet;
    unsigned empty_records;      /* zero-length records sent before the message */
    const char *key_path;        /* --key: the device's private key, for --proof */
    bool proof;                  /* present a client certificate in the handshake */
    const char *handshake_certificate_path; /* NULL: present --cert */
    const char *handshake_key_path;         /* NULL: sign with --key */
    const char *source_address;  /* NULL: the system picks the source address */
    enum hang_up_mode hang_up;
    unsigned long long hang_up_after; /* image bytes to receive first; 0: right after sending */
};

enum parse_result {
    PARSE_OK,
    PARSE_HELP,      /* --help was given: usage is printed, nothing else runs */
    PARSE_FAILED,    /* a message naming the option is already on stderr */
};

enum parse_result parse_options(int argument_count, char **arguments,
                                struct sim_options *options);

void print_usage(FILE *stream);

#endif
