/*
 * One simulated field device: connect, TLS 1.2 handshake against the pinned certificate,
 * send the attestation certificate, read the image until the connection ends.
 */
#ifndef OTA_DEVICE_SIM_DEVICE_H
#define OTA_DEVICE_SIM_DEVICE_H

#include <stdio.h>

#include "inputs.h"
#include "options.h"
#include "report.h"

struct device_job {
    unsigned device_number;              /* 1-based, as printed */
    const struct sim_options *options;
    const struct shared_inputs *inputs;
    FILE *output;                        /* NULL when the image is not kept */
    struct device_result result;         /* filled in by run_device */
};

/* Plays the device to its end and fills job->result. Never takes longer than --timeout-ms. */
void run_device(struct device_job *job);

#endif
