/*
 * rss-sampler: watches one process's memory while a load runs against it.
 *
 *   rss-sampler PID INTERVAL_MS
 *
 * Reads /proc/PID/status every INTERVAL_MS until SIGTERM or SIGINT (or until PID is gone),
 * then prints one line:
 *
 *   samples=N peak_rss_anon_kib=X peak_vm_rss_kib=Y vm_hwm_kib=Z
 *
 * RssAnon is sampled because it is what the agent itself allocates (heap, thread stacks, TLS
 * state), without the shared libraries and the image's page cache that VmRSS also counts.
 * VmHWM is the kernel's own high-water mark of VmRSS, which no sampling interval can miss.
 * A C loop rather than a shell one: a shell that forks `sleep` would blur the interval.
 */
#define _GNU_SOURCE

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct memory {
    long rss_anon_kib;
    long vm_rss_kib;
    long vm_hwm_kib;
};

static volatile sig_atomic_t stop_requested;

static void request_stop(int signal_number)
{
    (void)signal_number;
    stop_requested = 1;
}

/* One look at /proc/PID/status; 0 when the process is gone. */
static int read_status(const char *path, struct memory *memory)
{
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        return 0;
    }
    char line[256];
    while (fgets(line, sizeof line, file) != NULL) {
        long value = 0;
        if (sscanf(line, "RssAnon: %ld", &value) == 1) {
            memory->rss_anon_kib = value;
        } else if (sscanf(line, "VmRSS: %ld", &value) == 1) {
            memory->vm_rss_kib = value;
        } else if (sscanf(line, "VmHWM: %ld", &value) == 1) {
            memory->vm_hwm_kib = value;
        }
    }
    fclose(file);
    return 1;
}

int main(int argc, char **argv)
{
    long interval_ms = argc == 3 ? atol(argv[2]) : 0;
    if (argc != 3 || atol(argv[1]) <= 0 || interval_ms <= 0) {
        fputs("usage: rss-sampler PID INTERVAL_MS\n", stderr);
        return 2;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/status", atol(argv[1]));

    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = request_stop;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);

    struct memory peak = {0};
    long samples = 0;
    struct timespec pause = {.tv_sec = interval_ms / 1000,
                             .tv_nsec = (interval_ms % 1000) * 1000000L};
    while (!stop_requested) {
        struct memory now = {0};
        if (!read_status(path, &now)) {
            break;
        }
        samples++;
        peak.rss_anon_kib = now.rss_anon_kib > peak.rss_anon_kib ? now.rss_anon_kib
                                                                 : peak.rss_anon_kib;
        peak.vm_rss_kib = now.vm_rss_kib > peak.vm_rss_kib ? now.vm_rss_kib : peak.vm_rss_kib;
        peak.vm_hwm_kib = now.vm_hwm_kib; /* already a maximum */
        nanosleep(&pause, NULL);          /* a signal cuts it short, and the loop ends */
    }
    printf("samples=%ld peak_rss_anon_kib=%ld peak_vm_rss_kib=%ld vm_hwm_kib=%ld\n", samples,
           peak.rss_anon_kib, peak.vm_rss_kib, peak.vm_hwm_kib);
    return samples > 0 ? 0 : 1;
}
