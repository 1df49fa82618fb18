/*
 * ota-device-sim: plays ESP32 field devices against an ota-agent, for tests and for demos
 * by hand. Each device runs on its own thread with its own connection and prints one line
 * on stdout when it is done; see report.c for the format and options.c for the options.
 *
 * Exit status: 0 when every device was updated, 1 otherwise, 2 for usage errors.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <mbedtls/sha256.h>

#include "device.h"
#include "inputs.h"
#include "options.h"
#include "report.h"
#include "transport.h"

/* mbedTLS keeps its records on the heap, so a small stack lets a thousand devices run. */
#define DEVICE_STACK_SIZE ((size_t) 256 * 1024)

/* Descriptors beyond the devices' own: stdio, the output directory, the entropy source... */
#define SPARE_FILE_DESCRIPTORS 64

enum exit_status { EXIT_ALL_UPDATED = 0, EXIT_NOT_ALL_UPDATED = 1, EXIT_USAGE = 2 };

struct device_slot {
    struct device_job job;
    pthread_t thread;
    bool started;
};

static void *device_thread(void *argument)
{
    struct device_job *job = argument;
    run_device(job);
    print_result(&job->result);
    return NULL;
}

/*
 * Each device holds a socket and perhaps an output file. Raise the soft limit towards the
 * hard one if the default would not fit them all; if that fails, the devices that cannot get
 * a socket report it themselves.
 */
static void raise_open_file_limit(unsigned device_count)
{
    rlim_t needed = (rlim_t) device_count * 2 + SPARE_FILE_DESCRIPTORS;
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= needed) {
        return;
    }
    limit.rlim_cur = limit.rlim_max != RLIM_INFINITY && limit.rlim_max < needed ? limit.rlim_max
                                                                                : needed;
    (void) setrlimit(RLIMIT_NOFILE, &limit);
}

/* Opens PATH (one device) or PATH.1 .. PATH.N. False, with a message, if one cannot be. */
static bool open_outputs(const struct sim_options *options, struct device_slot *slots)
{
    if (options->output_path == NULL) {
        return true;
    }
    size_t path_size = strlen(options->output_path) + 16;
    char *path = malloc(path_size);
    if (path == NULL) {
        fputs("ota-device-sim: out of memory\n", stderr);
        return false;
    }
    bool opened_all = true;
    for (unsigned index = 0; index < options->device_count && opened_all; index++) {
        if (options->device_count == 1) {
            snprintf(path, path_size, "%s", options->output_path);
        } else {
            snprintf(path, path_size, "%s.%u", options->output_path, index + 1);
        }
        slots[index].job.output = fopen(path, "wb");
        if (slots[index].job.output == NULL) {
            char text[128];
            fprintf(stderr, "ota-device-sim: --output: cannot write '%s': %s\n", path,
                    describe_errno(errno, text, sizeof text));
            opened_all = false;
        }
    }
    free(path);
    return opened_all;
}

static void close_outputs(struct device_slot *slots, unsigned device_count)
{
    for (unsigned index = 0; index < device_count; index++) {
        if (slots[index].job.output != NULL) {
            fclose(slots[index].job.output);
            slots[index].job.output = NULL;
        }
    }
}

/* A device whose thread could not start still gets its line, as an error. */
static void report_unstarted(struct device_job *job, int error_number)
{
    struct device_result *result = &job->result;
    char text[128];
    memset(result, 0, sizeof *result);
    result->device_number = job->device_number;
    result->outcome = OUTCOME_ERROR;
    result->phase = PHASE_CONNECT;
    mbedtls_sha256_ret((const unsigned char *) "", 0, result->sha256, 0);
    snprintf(result->detail, sizeof result->detail, "cannot start the device's thread: %s",
             describe_errno(error_number, text, sizeof text));
    print_result(result);
}

static void run_devices(struct device_slot *slots, unsigned device_count)
{
    pthread_attr_t attributes;
    bool have_attributes = pthread_attr_init(&attributes) == 0;
    if (have_attributes) {
        (void) pthread_attr_setstacksize(&attributes, DEVICE_STACK_SIZE);
    }
    for (unsigned index = 0; index < device_count; index++) {
        int status = pthread_create(&slots[index].thread, have_attributes ? &attributes : NULL,
                                    device_thread, &slots[index].job);
        slots[index].started = status == 0;
        if (status != 0) {
            report_unstarted(&slots[index].job, status);
        }
    }
    for (unsigned index = 0; index < device_count; index++) {
        if (slots[index].started) {
            pthread_join(slots[index].thread, NULL);
        }
    }
    if (have_attributes) {
        pthread_attr_destroy(&attributes);
    }
}

static enum exit_status run(const struct sim_options *options,
                            const struct shared_inputs *inputs)
{
    struct device_slot *slots = calloc(options->device_count, sizeof *slots);
    if (slots == NULL) {
        fputs("ota-device-sim: out of memory\n", stderr);
        return EXIT_NOT_ALL_UPDATED;
    }
    for (unsigned index = 0; index < options->device_count; index++) {
        slots[index].job.device_number = index + 1;
        slots[index].job.options = options;
        slots[index].job.inputs = inputs;
    }
    enum exit_status status = EXIT_USAGE;
    if (open_outputs(options, slots)) {
        run_devices(slots, options->device_count);
        status = EXIT_ALL_UPDATED;
        for (unsigned index = 0; index < options->device_count; index++) {
            if (slots[index].job.result.outcome != OUTCOME_UPDATED) {
                status = EXIT_NOT_ALL_UPDATED;
            }
        }
    }
    close_outputs(slots, options->device_count);
    free(slots);
    return status;
}

int main(int argument_count, char **arguments)
{
    struct sim_options options;
    switch (parse_options(argument_count, arguments, &options)) {
    case PARSE_HELP:
        return EXIT_ALL_UPDATED;
    case PARSE_FAILED:
        return EXIT_USAGE;
    case PARSE_OK:
        break;
    }
    /* A server that goes away mid-write must show up as an error result, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    raise_open_file_limit(options.device_count);

    struct shared_inputs inputs;
    if (!load_inputs(&options, &inputs)) {
        return EXIT_USAGE;
    }
    enum exit_status status = run(&options, &inputs);
    free_inputs(&inputs);
    return (int) status;
}
