/*
 * The files every device of a run uses, read once before any device starts.
 */
#ifndef OTA_DEVICE_SIM_INPUTS_H
#define OTA_DEVICE_SIM_INPUTS_H

#include <stdbool.h>
#include <stddef.h>

#include "options.h"

struct shared_inputs {
    /* The pinned server certificate as mbedtls_x509_crt_parse wants it (PEM: with its NUL). */
    unsigned char *trusted_ca;
    size_t trusted_ca_length;
    /* What each device sends after the handshake: the attestation DER, or --payload. */
    unsigned char *message;
    size_t message_length;
};

/*
 * Reads and checks --ca and --cert (or --payload). On failure prints a message naming the
 * option, frees what it read and returns false: a usage error.
 */
bool load_inputs(const struct sim_options *options, struct shared_inputs *inputs);

void free_inputs(struct shared_inputs *inputs);

#endif
