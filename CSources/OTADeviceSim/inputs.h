/*
 * The files every device of a run uses, read once before any device starts.
 */
#ifndef OTA_DEVICE_SIM_INPUTS_H
#define OTA_DEVICE_SIM_INPUTS_H

#include <stdbool.h>
#include <stddef.h>

#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "options.h"

struct shared_inputs {
    /* The pinned server certificate as mbedtls_x509_crt_parse wants it (PEM: with its NUL). */
    unsigned char *trusted_ca;
    size_t trusted_ca_length;
    /* What each device sends after the handshake: the attestation DER, or --payload. */
    unsigned char *message;
    size_t message_length;
    /* With --proof: the certificate presented in the handshake and its key, as the mbedTLS
     * parsers want them (PEM: with its NUL); NULL otherwise. */
    unsigned char *client_certificate;
    size_t client_certificate_length;
    unsigned char *client_key;
    size_t client_key_length;
};

/*
 * Parses the client certificate of `inputs` into `certificate`, tolerating the unknown
 * critical extension DICE certificates carry (the device only sends it). 0 or an mbedTLS error.
 */
int parse_client_certificate(const struct shared_inputs *inputs, mbedtls_x509_crt *certificate);

/* Parses the client key of `inputs` into `key`. 0 or an mbedTLS error. */
int parse_client_key(const struct shared_inputs *inputs, mbedtls_pk_context *key);

/*
 * Reads and checks --ca and --cert (or --payload). On failure prints a message naming the
 * option, frees what it read and returns false: a usage error.
 */
bool load_inputs(const struct sim_options *options, struct shared_inputs *inputs);

void free_inputs(struct shared_inputs *inputs);

#endif
