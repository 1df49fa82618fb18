/*
 * reader: the benchmark's single-stream client, one program for both servers so that the
 * agent and nginx are read by exactly the same TLS stack, cipher and read size.
 *
 *   reader --port N --ca PEM --agent DER   sends the attestation certificate, reads to the end
 *   reader --port N --ca PEM --http PATH   sends a GET for PATH, reads the body
 *   ... [--expect FILE]                    compares the body with FILE instead of hashing it
 *
 * TLS 1.2 only, ECDHE-RSA-AES128-GCM-SHA256, groups X25519 then P-256, the server certificate
 * checked against the pinned PEM and the name "ota-agent", 256 KiB reads (from the socket, with
 * read-ahead, and from TLS). Prints one line:
 *
 *   bytes=N seconds=S first_byte_ms=F cpu_seconds=C sha256=HEX
 *
 * or, with --expect, `matches=yes` (or `no`) in place of sha256=. SHA-256 costs this machine
 * about 0.6 ms of CPU per MiB, half of what the reader spends in all; comparing with the file
 * (mapped; a benchmark tool may take the risk of a file truncated under it) costs a tenth of
 * that, so that the reader stops being what limits the rate and the servers are measured.
 *
 * `seconds` runs from the first body byte to the last, so it is the streaming rate alone;
 * the wait before the first byte (Dice-Auth for the agent) is first_byte_ms. cpu_seconds is
 * the reader's own user+system time, to tell whether the reader was the bottleneck.
 * Exit status: 0 for a complete body (close_notify from the agent, Content-Length from nginx),
 * 1 for any failure, 2 for usage errors.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#define READ_SIZE (256 * 1024)
#define MAX_HEADER 8192
#define MAX_CERTIFICATE (16 * 1024)

struct options {
    const char *host;
    int port;
    const char *ca_path;
    const char *der_path;  /* agent mode */
    const char *http_path; /* nginx mode */
    const char *expect_path;
};

/* What the body loop tracks: bytes, digest and the two timestamps the rate comes from. */
struct body {
    uint64_t bytes;
    EVP_MD_CTX *digest;        /* NULL with --expect */
    const unsigned char *expected; /* --expect: the file, mapped */
    uint64_t expected_size;
    bool differs;
    double first_byte;
    double last_byte;
};

static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static double cpu_seconds(void)
{
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
           (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
}

static int fail(const char *what)
{
    fprintf(stderr, "reader: %s\n", what);
    ERR_print_errors_fp(stderr);
    return 1;
}

static void usage(void)
{
    fputs("usage: reader [--host ADDR] --port N --ca PINNED.pem (--agent CERT.der | --http PATH)\n"
          "              [--expect FILE]\n",
          stderr);
}

static bool parse_options(int argc, char **argv, struct options *options)
{
    *options = (struct options){.host = "127.0.0.1"};
    for (int index = 1; index + 1 < argc; index += 2) {
        const char *name = argv[index];
        const char *value = argv[index + 1];
        if (strcmp(name, "--host") == 0) {
            options->host = value;
        } else if (strcmp(name, "--port") == 0) {
            options->port = atoi(value);
        } else if (strcmp(name, "--ca") == 0) {
            options->ca_path = value;
        } else if (strcmp(name, "--agent") == 0) {
            options->der_path = value;
        } else if (strcmp(name, "--http") == 0) {
            options->http_path = value;
        } else if (strcmp(name, "--expect") == 0) {
            options->expect_path = value;
        } else {
            return false;
        }
    }
    bool one_mode = (options->der_path == NULL) != (options->http_path == NULL);
    return argc % 2 == 1 && options->port > 0 && options->port < 65536 &&
           options->ca_path != NULL && one_mode;
}

static int connect_tcp(const char *host, int port)
{
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &address.sin_addr) != 1) {
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* The client side every run shares: TLS 1.2, one suite, X25519 then P-256, pinned server. */
static SSL_CTX *make_context(const char *ca_path)
{
    SSL_CTX *context = SSL_CTX_new(TLS_client_method());
    if (context == NULL) {
        return NULL;
    }
    bool ok = SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) == 1 &&
              SSL_CTX_set_max_proto_version(context, TLS1_2_VERSION) == 1 &&
              SSL_CTX_set_cipher_list(context, "ECDHE-RSA-AES128-GCM-SHA256") == 1 &&
              SSL_CTX_set1_groups_list(context, "X25519:P-256") == 1 &&
              SSL_CTX_load_verify_locations(context, ca_path, NULL) == 1;
    if (!ok) {
        SSL_CTX_free(context);
        return NULL;
    }
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER, NULL);
    /* Read ahead into a 256 KiB buffer: one recv(2) takes many records, so the reader, which
     * also decrypts and hashes on its one core, stays as cheap as it can be for both servers. */
    SSL_CTX_set_read_ahead(context, 1);
    SSL_CTX_set_default_read_buffer_len(context, READ_SIZE);
    return context;
}

static bool write_all(SSL *ssl, const void *data, size_t length)
{
    size_t written = 0;
    return SSL_write_ex(ssl, data, length, &written) == 1 && written == length;
}

/* Reads a whole small file (the DER certificate) into buffer; its length, or -1. */
static long read_file(const char *path, unsigned char *buffer, size_t capacity)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        return -1;
    }
    size_t length = fread(buffer, 1, capacity, file);
    bool whole = feof(file) && !ferror(file);
    fclose(file);
    return whole ? (long)length : -1;
}

static void take_body(struct body *body, const unsigned char *data, size_t length, double at)
{
    if (length == 0) {
        return;
    }
    if (body->bytes == 0) {
        body->first_byte = at;
    }
    body->last_byte = at;
    if (body->digest != NULL) {
        EVP_DigestUpdate(body->digest, data, length);
    } else if (body->bytes + length > body->expected_size ||
               memcmp(data, body->expected + body->bytes, length) != 0) {
        body->differs = true;
    }
    body->bytes += length;
}

/* Agent mode: the certificate goes out, then everything up to close_notify is the image. */
static int read_from_agent(SSL *ssl, const char *der_path, unsigned char *buffer,
                           struct body *body)
{
    long der_length = read_file(der_path, buffer, MAX_CERTIFICATE);
    if (der_length <= 0) {
        return fail("cannot read the DER certificate");
    }
    if (!write_all(ssl, buffer, (size_t)der_length)) {
        return fail("cannot send the certificate");
    }
    for (;;) {
        size_t got = 0;
        if (SSL_read_ex(ssl, buffer, READ_SIZE, &got) == 1) {
            take_body(body, buffer, got, now_seconds());
            continue;
        }
        /* Only close_notify is a complete image: the agent resets an unfinished transfer. */
        return SSL_get_error(ssl, 0) == SSL_ERROR_ZERO_RETURN ? 0 : fail("stream broken");
    }
}

/* The body length from a complete header block, or -1 unless it is a 200 with a length. */
static long long parse_header(const char *header)
{
    if (strncmp(header, "HTTP/1.1 200", 12) != 0) {
        return -1;
    }
    const char *field = strcasestr(header, "\r\nContent-Length:");
    return field == NULL ? -1 : strtoll(field + 17, NULL, 10);
}

/* nginx mode: a GET, then Content-Length bytes of body after the header block. */
static int read_from_http(SSL *ssl, const char *path, unsigned char *buffer, struct body *body)
{
    char request[512];
    int length = snprintf(request, sizeof request,
                          "GET %s HTTP/1.1\r\nHost: ota-agent\r\nConnection: close\r\n\r\n",
                          path);
    if (length <= 0 || (size_t)length >= sizeof request || !write_all(ssl, request,
                                                                       (size_t)length)) {
        return fail("cannot send the request");
    }
    size_t filled = 0;
    long long content_length = -1;
    while (content_length < 0 || body->bytes < (uint64_t)content_length) {
        size_t got = 0;
        if (SSL_read_ex(ssl, buffer + filled, READ_SIZE - filled, &got) != 1) {
            return fail("stream ended before the whole body");
        }
        double at = now_seconds();
        if (content_length >= 0) {
            take_body(body, buffer, got, at);
            continue;
        }
        filled += got;
        buffer[filled] = '\0';
        char *end = strstr((char *)buffer, "\r\n\r\n");
        if (end == NULL) {
            if (filled >= MAX_HEADER) {
                return fail("header too long");
            }
            continue;
        }
        content_length = parse_header((const char *)buffer);
        if (content_length < 0) {
            return fail("not a 200 with a Content-Length");
        }
        size_t header_length = (size_t)(end + 4 - (char *)buffer);
        take_body(body, buffer + header_length, filled - header_length, at);
        filled = 0;
    }
    return body->bytes == (uint64_t)content_length ? 0 : fail("body longer than announced");
}

static void print_report(const struct body *body, double request_sent, double cpu)
{
    printf("bytes=%llu seconds=%.6f first_byte_ms=%.3f cpu_seconds=%.3f ",
           (unsigned long long)body->bytes, body->last_byte - body->first_byte,
           (body->first_byte - request_sent) * 1e3, cpu);
    if (body->digest == NULL) {
        bool whole = !body->differs && body->bytes == body->expected_size;
        printf("matches=%s\n", whole ? "yes" : "no");
        return;
    }
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_length = 0;
    EVP_DigestFinal_ex(body->digest, digest, &digest_length);
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    for (unsigned int index = 0; index < digest_length; index++) {
        snprintf(hex + 2 * index, 3, "%02x", digest[index]);
    }
    printf("sha256=%s\n", hex);
}

/* --expect: the file to compare the body with, mapped read-only (never unmapped: the process
 * ends with the run). */
static bool map_expected(const char *path, struct body *body)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat status;
    if (fd < 0 || fstat(fd, &status) != 0 || status.st_size <= 0) {
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    void *mapped = mmap(NULL, (size_t)status.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (mapped == MAP_FAILED) {
        return false;
    }
    body->expected = mapped;
    body->expected_size = (uint64_t)status.st_size;
    return true;
}

static int run(const struct options *options, SSL *ssl, unsigned char *buffer)
{
    if (SSL_connect(ssl) != 1) {
        return fail("handshake failed");
    }
    struct body body = {0};
    if (options->expect_path != NULL) {
        if (!map_expected(options->expect_path, &body)) {
            return fail("cannot map the --expect file");
        }
    } else if ((body.digest = EVP_MD_CTX_new()) == NULL ||
               EVP_DigestInit_ex(body.digest, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(body.digest);
        return fail("cannot start SHA-256");
    }
    double cpu_before = cpu_seconds();
    double request_sent = now_seconds();
    int status = options->der_path != NULL
                     ? read_from_agent(ssl, options->der_path, buffer, &body)
                     : read_from_http(ssl, options->http_path, buffer, &body);
    if (status == 0) {
        print_report(&body, request_sent, cpu_seconds() - cpu_before);
        /* Our own close_notify, then the close that the agent waits for to count an update. */
        SSL_shutdown(ssl);
    }
    EVP_MD_CTX_free(body.digest);
    return status;
}

int main(int argc, char **argv)
{
    struct options options;
    if (!parse_options(argc, argv, &options)) {
        usage();
        return 2;
    }
    SSL_CTX *context = make_context(options.ca_path);
    if (context == NULL) {
        return fail("cannot set up the TLS client");
    }
    unsigned char *buffer = malloc(READ_SIZE + 1); /* +1: the header parser's terminator */
    int fd = connect_tcp(options.host, options.port);
    SSL *ssl = SSL_new(context);
    int status;
    if (buffer == NULL || fd < 0 || ssl == NULL) {
        status = fail(fd < 0 ? strerror(errno) : "out of memory");
    } else {
        SSL_set_fd(ssl, fd);
        SSL_set_tlsext_host_name(ssl, "ota-agent");
        SSL_set1_host(ssl, "ota-agent");
        status = run(&options, ssl, buffer);
    }
    SSL_free(ssl);
    if (fd >= 0) {
        close(fd);
    }
    free(buffer);
    SSL_CTX_free(context);
    return status;
}
