/*
 * serve_one.c - a one-device OTA server on the ota-agent C core (libotacore).
 *
 * Listens, accepts one device, runs the TLS handshake, reads the device's DER attestation
 * certificate and prints who it names. A device whose certificate fingerprint (SHA-256 of the
 * DER) is on the --allow list receives the image; any other is refused with no image byte.
 *
 * The allow-list stands in for what the ota-agent tool does with Dice-Auth: a fingerprint
 * list proves nothing about the device (the certificate is public data), so this is a sample
 * of the C API, not a way to deploy. Built against an install made by scripts/install:
 *
 *     cc -o serve-one examples/c/serve_one.c $(pkg-config --cflags --libs ota-core)
 *
 * stdout, one line each:
 *     listening address=ADDR port=PORT backend=NAME
 *     device address=ADDR subject="..." sha256=HEX
 *         (the subject is device-controlled: bytes outside printable ASCII, '"' and '\\' are
 *         printed escaped, as \xNN, so a certificate cannot drive the terminal or forge lines)
 *     outcome=updated bytes=N | outcome=refused | outcome=failed phase=P status=S detail="..."
 * Exit status: 0 updated, 3 refused, 1 any other failure, 2 usage or configuration errors.
 */

#include <ota_core.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERVE_ONE_MAX_ALLOWED 16
#define SERVE_ONE_DETAIL_SIZE 512

enum serve_one_exit {
    SERVE_ONE_UPDATED = 0,
    SERVE_ONE_FAILED = 1,
    SERVE_ONE_USAGE = 2,
    SERVE_ONE_REFUSED = 3,
};

struct serve_one_options {
    const char *certificate_path;
    const char *key_path;
    const char *image_path;
    const char *bind_address; /* NULL: every address */
    uint16_t port;
    int timeout_ms; /* each step: accept, handshake, certificate, transfer, close */
    size_t allowed_count;
    uint8_t allowed[SERVE_ONE_MAX_ALLOWED][32];
};

static const char serve_one_usage[] =
    "usage: serve-one --cert SERVER.crt --key SERVER.key --image FIRMWARE.bin\n"
    "                 [--allow SHA256_HEX]... [--bind ADDRESS] [--port PORT]\n"
    "                 [--timeout-ms MS]\n"
    "Serves one device: the image if its attestation certificate's SHA-256 is allowed,\n"
    "else a refusal. Port 4433 by default, 0 for an ephemeral one; timeout 30000 ms.\n";

static void
serve_one_log(void *context, int level, const char *message)
{
    static const char *const level_names[] = {"debug", "info", "warning", "error"};
    const char *name = (level >= 0 && level <= OTA_LOG_ERROR) ? level_names[level] : "?";

    (void)context;

    fprintf(stderr, "serve-one: core %s: %s\n", name, message);
}

/* The value of one hexadecimal digit, or -1. */
static int
serve_one_nibble(char digit)
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

/* Exactly 64 hexadecimal digits into 32 bytes; -1 for anything else. */
static int
serve_one_parse_hex(const char *text, uint8_t digest[32])
{
    if (strlen(text) != 64) {
        return -1;
    }
    for (size_t index = 0; index < 32; index++) {
        int high = serve_one_nibble(text[2 * index]);
        int low = serve_one_nibble(text[2 * index + 1]);

        if (high < 0 || low < 0) {
            return -1;
        }
        digest[index] = (uint8_t)(high << 4 | low);
    }
    return 0;
}

static int
serve_one_parse_number(const char *text, long minimum, long maximum, long *value)
{
    char *end = NULL;
    long parsed = strtol(text, &end, 10);

    if (end == text || *end != '\0' || parsed < minimum || parsed > maximum) {
        return -1;
    }
    *value = parsed;
    return 0;
}

/* One option and its value; 0 when understood, -1 (after a message) when not. */
static int
serve_one_take_option(struct serve_one_options *options, const char *name, const char *value)
{
    long number = 0;

    if (strcmp(name, "--cert") == 0) {
        options->certificate_path = value;
    } else if (strcmp(name, "--key") == 0) {
        options->key_path = value;
    } else if (strcmp(name, "--image") == 0) {
        options->image_path = value;
    } else if (strcmp(name, "--bind") == 0) {
        options->bind_address = value;
    } else if (strcmp(name, "--port") == 0) {
        if (serve_one_parse_number(value, 0, 65535, &number) != 0) {
            fprintf(stderr, "serve-one: --port must be 0 to 65535 (got '%s')\n", value);
            return -1;
        }
        options->port = (uint16_t)number;
    } else if (strcmp(name, "--timeout-ms") == 0) {
        if (serve_one_parse_number(value, 1, 3600000, &number) != 0) {
            fprintf(stderr, "serve-one: --timeout-ms must be 1 to 3600000 (got '%s')\n", value);
            return -1;
        }
        options->timeout_ms = (int)number;
    } else if (strcmp(name, "--allow") == 0) {
        if (options->allowed_count == SERVE_ONE_MAX_ALLOWED ||
            serve_one_parse_hex(value, options->allowed[options->allowed_count]) != 0) {
            fprintf(stderr, "serve-one: --allow takes 64 hex digits, at most %d times\n",
                    SERVE_ONE_MAX_ALLOWED);
            return -1;
        }
        options->allowed_count++;
    } else {
        fprintf(stderr, "serve-one: unknown option '%s'\n", name);
        return -1;
    }
    return 0;
}

static int
serve_one_parse(int argc, char **argv, struct serve_one_options *options)
{
    memset(options, 0, sizeof(*options));
    options->port = 4433;
    options->timeout_ms = 30000;

    for (int index = 1; index < argc; index += 2) {
        if (index + 1 >= argc) {
            fprintf(stderr, "serve-one: %s needs a value\n", argv[index]);
            return -1;
        }
        if (serve_one_take_option(options, argv[index], argv[index + 1]) != 0) {
            return -1;
        }
    }
    if (options->certificate_path == NULL || options->key_path == NULL ||
        options->image_path == NULL) {
        fprintf(stderr, "serve-one: --cert, --key and --image are required\n");
        return -1;
    }
    return 0;
}

static int
serve_one_is_allowed(const struct serve_one_options *options, const uint8_t digest[32])
{
    for (size_t index = 0; index < options->allowed_count; index++) {
        if (memcmp(options->allowed[index], digest, 32) == 0) {
            return 1;
        }
    }
    return 0;
}

static void
serve_one_print_failure(const char *phase, int status, const char *detail)
{
    printf("outcome=failed phase=%s status=%s detail=\"%s\"\n", phase, ota_status_name(status),
           detail);
}

/*
 * Prints untrusted text (a certificate's subject, chosen by the device) so that it cannot
 * drive the terminal or break the line: printable ASCII as is, '"' and '\\' behind a
 * backslash, every other byte (controls such as LF, CR, ESC, BEL, DEL, C1 and any non-ASCII
 * byte) as \xNN.
 */
static void
serve_one_print_escaped(const char *text)
{
    for (const unsigned char *byte = (const unsigned char *)text; *byte != '\0'; byte++) {
        if (*byte == '"' || *byte == '\\') {
            printf("\\%c", *byte);
        } else if (*byte >= 0x20 && *byte < 0x7f) {
            putchar(*byte);
        } else {
            printf("\\x%02x", *byte);
        }
    }
}

/*
 * One device on an accepted socket, which `conn` owns. Returns the exit status; the caller
 * frees `conn` (which resets a socket left open, as on every failure path here).
 */
static int
serve_one_device(ota_conn *conn, const ota_image *image, const struct serve_one_options *options,
                 const char *peer)
{
    uint8_t der[OTA_DER_MAX_LENGTH];
    size_t der_length = 0;
    ota_cert_identity identity;
    ota_transfer_limits limits = {options->timeout_ms, options->timeout_ms};
    uint64_t bytes_sent = 0;
    int status;

    status = ota_conn_handshake(conn, options->timeout_ms);
    if (status != OTA_OK) {
        serve_one_print_failure("handshake", status, ota_conn_detail(conn));
        return SERVE_ONE_FAILED;
    }

    status = ota_conn_read_certificate(conn, der, sizeof(der), &der_length, options->timeout_ms);
    if (status != OTA_OK) {
        serve_one_print_failure("certificate", status, ota_conn_detail(conn));
        return SERVE_ONE_FAILED;
    }

    /* The fingerprint is filled in even when the walk fails; the subject is then empty. */
    (void)ota_cert_identify(der, der_length, &identity);
    printf("device address=%s subject=\"", peer);
    serve_one_print_escaped(identity.subject);
    printf("\" sha256=");
    for (size_t index = 0; index < sizeof(identity.sha256); index++) {
        printf("%02x", identity.sha256[index]);
    }
    printf("\n");

    if (!serve_one_is_allowed(options, identity.sha256)) {
        (void)ota_conn_refuse(conn);
        printf("outcome=refused\n");
        return SERVE_ONE_REFUSED;
    }

    status = ota_conn_send_image(conn, image, &limits, NULL, NULL, &bytes_sent);
    if (status != OTA_OK) {
        serve_one_print_failure("transfer", status, ota_conn_detail(conn));
        ota_conn_abort(conn);
        return SERVE_ONE_FAILED;
    }

    status = ota_conn_finish(conn, options->timeout_ms);
    if (status != OTA_OK) {
        serve_one_print_failure("close", status, ota_conn_detail(conn));
        return SERVE_ONE_FAILED;
    }
    printf("outcome=updated bytes=%llu\n", (unsigned long long)bytes_sent);
    return SERVE_ONE_UPDATED;
}

int
main(int argc, char **argv)
{
    struct serve_one_options options;
    char detail[SERVE_ONE_DETAIL_SIZE] = "";
    char peer[64] = "";
    uint16_t peer_port = 0;
    ota_server_config *config = NULL;
    ota_image *image = NULL;
    ota_listener *listener = NULL;
    ota_conn *conn = NULL;
    int client_fd = -1;
    int status = OTA_OK;
    int result = SERVE_ONE_USAGE;

    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(serve_one_usage, stdout);
        return 0;
    }
    if (serve_one_parse(argc, argv, &options) != 0) {
        fputs(serve_one_usage, stderr);
        return SERVE_ONE_USAGE;
    }
    ota_set_log_callback(serve_one_log, NULL);

    /* 1. What is served: certificate and key, the image. */
    config = ota_server_config_new(options.certificate_path, options.key_path, &status, detail,
                                   sizeof(detail));
    if (config == NULL) {
        fprintf(stderr, "serve-one: %s (%s)\n", detail, ota_status_name(status));
        goto exit;
    }
    image = ota_image_open(options.image_path, &status, detail, sizeof(detail));
    if (image == NULL) {
        fprintf(stderr, "serve-one: %s (%s)\n", detail, ota_status_name(status));
        goto exit;
    }

    /* 2. Listen, and say where, so that a test can start the device. */
    listener = ota_listener_new(options.bind_address, options.port, 16, &status, detail,
                                sizeof(detail));
    if (listener == NULL) {
        fprintf(stderr, "serve-one: %s (%s)\n", detail, ota_status_name(status));
        goto exit;
    }
    printf("listening address=%s port=%u backend=%s\n", ota_listener_address(listener),
           (unsigned int)ota_listener_port(listener), ota_backend_name());
    fflush(stdout);

    /* 3. One device. The socket is ours until ota_conn_new takes it (even when it fails). */
    result = SERVE_ONE_FAILED;
    status = ota_listener_accept(listener, options.timeout_ms, NULL, &client_fd, peer,
                                 sizeof(peer), &peer_port);
    if (status != OTA_OK) {
        serve_one_print_failure("accept", status, "no device connected");
        goto exit;
    }
    ota_listener_close(listener);
    conn = ota_conn_new(config, client_fd, NULL);
    if (conn == NULL) {
        serve_one_print_failure("accept", OTA_ERR_MEMORY, "ota_conn_new");
        goto exit;
    }
    result = serve_one_device(conn, image, &options, peer);

exit:
    ota_conn_free(conn);
    ota_listener_free(listener);
    ota_image_free(image);
    ota_server_config_free(config);
    ota_thread_done();
    fflush(stdout);
    return result;
}
