/*
 * Reading the run's input files once, so that a bad path is a usage error (exit 2) before
 * any device connects, and so that a thousand devices share one copy.
 */
#include "inputs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/error.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "transport.h"

/* Generous bounds; a certificate is a few KiB, a garbage payload for tests rarely more. */
#define MAX_CA_FILE_SIZE ((size_t) 1 << 20)
#define MAX_MESSAGE_FILE_SIZE ((size_t) 64 << 20)
#define INITIAL_CAPACITY ((size_t) 4096)

/* Doubles the buffer up to max_size, keeping room for a terminating NUL. 0 or an errno. */
static int grow_buffer(unsigned char **buffer, size_t *capacity, size_t max_size)
{
    size_t new_capacity = *capacity * 2 > max_size ? max_size : *capacity * 2;
    unsigned char *grown = realloc(*buffer, new_capacity + 1);
    if (grown == NULL) {
        return ENOMEM;
    }
    *buffer = grown;
    *capacity = new_capacity;
    return 0;
}

/* Reads from file until end of file, at most max_size bytes. 0 or an errno. */
static int read_stream(FILE *file, size_t max_size, unsigned char **buffer, size_t *length)
{
    size_t capacity = INITIAL_CAPACITY > max_size ? max_size : INITIAL_CAPACITY;
    *buffer = malloc(capacity + 1);
    *length = 0;
    if (*buffer == NULL) {
        return ENOMEM;
    }
    for (;;) {
        if (*length == capacity) {
            if (capacity == max_size) {
                return fgetc(file) == EOF ? 0 : EFBIG;
            }
            int error_number = grow_buffer(buffer, &capacity, max_size);
            if (error_number != 0) {
                return error_number;
            }
        }
        size_t count = fread(*buffer + *length, 1, capacity - *length, file);
        *length += count;
        if (count == 0) {
            return ferror(file) ? (errno != 0 ? errno : EIO) : 0;
        }
    }
}

/*
 * Reads a whole file into a fresh buffer with a NUL after the contents (not counted in
 * length), as the PEM parser needs. Returns 0 or an errno; on failure nothing is kept.
 */
static int read_whole_file(const char *path, size_t max_size,
                           unsigned char **contents, size_t *length)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        return errno;
    }
    unsigned char *buffer = NULL;
    errno = 0;
    int error_number = read_stream(file, max_size, &buffer, length);
    fclose(file);
    if (error_number != 0) {
        free(buffer);
        return error_number;
    }
    buffer[*length] = '\0';
    *contents = buffer;
    return 0;
}

static bool read_option_file(const char *option_name, const char *path, size_t max_size,
                             unsigned char **contents, size_t *length)
{
    int error_number = read_whole_file(path, max_size, contents, length);
    if (error_number != 0) {
        char text[128];
        fprintf(stderr, "ota-device-sim: --%s: cannot read '%s': %s\n", option_name, path,
                error_number == EFBIG ? "file too large"
                                      : describe_errno(error_number, text, sizeof text));
        return false;
    }
    return true;
}

/*
 * The parser takes PEM only with the terminating NUL counted, and DER only without it, so
 * the length handed on depends on what the file holds. Parsing once here turns a wrong file
 * into a usage error instead of a thousand identical handshake failures.
 */
static bool check_trusted_ca(const char *path, struct shared_inputs *inputs)
{
    if (strstr((const char *) inputs->trusted_ca, "-----BEGIN ") != NULL) {
        inputs->trusted_ca_length += 1;
    }
    mbedtls_x509_crt chain;
    mbedtls_x509_crt_init(&chain);
    int status = mbedtls_x509_crt_parse(&chain, inputs->trusted_ca, inputs->trusted_ca_length);
    mbedtls_x509_crt_free(&chain);
    if (status != 0) {
        char text[160] = "some certificates in it could not be parsed";
        if (status < 0) {
            mbedtls_strerror(status, text, sizeof text);
        }
        fprintf(stderr, "ota-device-sim: --ca: '%s' is not a usable certificate: %s\n",
                path, text);
        return false;
    }
    return true;
}

/* PEM parsers want the terminating NUL counted; DER ones must not see it. */
static void count_pem_terminator(unsigned char *contents, size_t *length)
{
    if (strstr((const char *) contents, "-----BEGIN ") != NULL) {
        *length += 1;
    }
}

/* The device's own certificate: whatever extensions it carries, the device only sends it. */
static int accept_any_extension(void *context, mbedtls_x509_crt const *certificate,
                                mbedtls_x509_buf const *oid, int critical,
                                const unsigned char *start, const unsigned char *end)
{
    (void) context;
    (void) certificate;
    (void) oid;
    (void) critical;
    (void) start;
    (void) end;
    return 0;
}

int parse_client_certificate(const struct shared_inputs *inputs, mbedtls_x509_crt *certificate)
{
    const unsigned char *bytes = inputs->client_certificate;
    size_t length = inputs->client_certificate_length;
    if (strstr((const char *) bytes, "-----BEGIN ") == NULL) {
        return mbedtls_x509_crt_parse_der_with_ext_cb(certificate, bytes, length, 1,
                                                      accept_any_extension, NULL);
    }
    /* PEM: decode to DER first, so the extension callback applies here too. */
    mbedtls_pem_context pem;
    mbedtls_pem_init(&pem);
    size_t used = 0;
    int status = mbedtls_pem_read_buffer(&pem, "-----BEGIN CERTIFICATE-----",
                                         "-----END CERTIFICATE-----", bytes, NULL, 0, &used);
    if (status == 0) {
        /* mbedTLS 2.28 has no accessor for the decoded bytes; the fields are public. */
        status = mbedtls_x509_crt_parse_der_with_ext_cb(certificate, pem.buf, pem.buflen, 1,
                                                        accept_any_extension, NULL);
    }
    mbedtls_pem_free(&pem);
    return status;
}

int parse_client_key(const struct shared_inputs *inputs, mbedtls_pk_context *key)
{
    return mbedtls_pk_parse_key(key, inputs->client_key, inputs->client_key_length, NULL, 0);
}

/* Reads and parses the handshake's certificate and key once, so a bad file is a usage error. */
static bool load_client_credentials(const struct sim_options *options,
                                    struct shared_inputs *inputs)
{
    bool own_certificate = options->handshake_certificate_path == NULL;
    bool own_key = options->handshake_key_path == NULL;
    const char *certificate_option = own_certificate ? "cert" : "handshake-cert";
    const char *key_option = own_key ? "key" : "handshake-key";
    const char *certificate_path = own_certificate ? options->certificate_path
                                                   : options->handshake_certificate_path;
    const char *key_path = own_key ? options->key_path : options->handshake_key_path;
    if (!read_option_file(certificate_option, certificate_path, MAX_CA_FILE_SIZE,
                          &inputs->client_certificate, &inputs->client_certificate_length) ||
        !read_option_file(key_option, key_path, MAX_CA_FILE_SIZE, &inputs->client_key,
                          &inputs->client_key_length)) {
        return false;
    }
    count_pem_terminator(inputs->client_key, &inputs->client_key_length);

    char text[160];
    mbedtls_x509_crt certificate;
    mbedtls_x509_crt_init(&certificate);
    int status = parse_client_certificate(inputs, &certificate);
    mbedtls_x509_crt_free(&certificate);
    if (status != 0) {
        mbedtls_strerror(status, text, sizeof text);
        fprintf(stderr, "ota-device-sim: --%s: '%s' is not a usable certificate: %s\n",
                certificate_option, certificate_path, text);
        return false;
    }
    mbedtls_pk_context key;
    mbedtls_pk_init(&key);
    status = parse_client_key(inputs, &key);
    mbedtls_pk_free(&key);
    if (status != 0) {
        mbedtls_strerror(status, text, sizeof text);
        fprintf(stderr, "ota-device-sim: --%s: '%s' is not a usable private key: %s\n",
                key_option, key_path, text);
        return false;
    }
    return true;
}

bool load_inputs(const struct sim_options *options, struct shared_inputs *inputs)
{
    memset(inputs, 0, sizeof *inputs);
    if (!read_option_file("ca", options->trusted_ca_path, MAX_CA_FILE_SIZE,
                          &inputs->trusted_ca, &inputs->trusted_ca_length) ||
        !check_trusted_ca(options->trusted_ca_path, inputs)) {
        free_inputs(inputs);
        return false;
    }
    /* With --payload the certificate is not sent, so it is not even read. */
    const char *option_name = options->payload_path != NULL ? "payload" : "cert";
    const char *path = options->payload_path != NULL ? options->payload_path
                                                     : options->certificate_path;
    if (!read_option_file(option_name, path, MAX_MESSAGE_FILE_SIZE,
                          &inputs->message, &inputs->message_length)) {
        free_inputs(inputs);
        return false;
    }
    if (options->proof && !load_client_credentials(options, inputs)) {
        free_inputs(inputs);
        return false;
    }
    return true;
}

void free_inputs(struct shared_inputs *inputs)
{
    free(inputs->trusted_ca);
    free(inputs->message);
    free(inputs->client_certificate);
    free(inputs->client_key);
    memset(inputs, 0, sizeof *inputs);
}
