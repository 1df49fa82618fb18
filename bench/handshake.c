/*
 * handshake: the bare TLS handshake the agent's CPU per update is compared with.
 *
 *   handshake --cert PEM --key PEM --count N [--transport socketpair|tcp]
 *
 * Built twice by scripts/bench: with -DBENCH_SERVER_OPENSSL (handshake-openssl) and with
 * -DBENCH_SERVER_MBEDTLS (handshake-mbedtls). The server side is configured as the agent's
 * backend of that library configures itself (same suites in the same order, same groups, no
 * session cache or tickets, so every handshake is a full one); the client side is always
 * mbedTLS 2.28 with the device simulator's settings (library defaults, TLS 1.2 only, the
 * server certificate pinned), so the server negotiates exactly what it negotiates with the
 * simulated devices. Server and client run N handshakes, the server on the main thread and the
 * client on a second one, each over a fresh connection: a socketpair by default (the handshake
 * alone), or with `--transport tcp` a loopback TCP connection that the server accepts and closes
 * as the agent does. Only the server thread's CPU time (CLOCK_THREAD_CPUTIME_ID, user and
 * system) from the accept (or the socketpair's hand-over) to the close is reported; asking the
 * client thread for the next connection is left out:
 *
 *   handshakes=N server_cpu_us=X wall_us=Y
 *
 * both per handshake. A warm-up handshake is left out of the figures.
 */
#define _GNU_SOURCE

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/x509_crt.h>

/* The agent's suites and groups in its order, by path so that scripts/bench's cc needs no -I. */
#include "../CSources/OTACore/tls_policy.h"

#if defined(BENCH_SERVER_OPENSSL) == defined(BENCH_SERVER_MBEDTLS)
#error "define exactly one of BENCH_SERVER_OPENSSL and BENCH_SERVER_MBEDTLS"
#endif

#ifdef BENCH_SERVER_OPENSSL
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

/* One mbedTLS configuration and its random generator; used for the client, and the server. */
struct mbedtls_side {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context random;
    mbedtls_ssl_config config;
    mbedtls_x509_crt certificate;
    mbedtls_pk_context key;
};

/*
 * The client thread takes one socket end per handshake from this pipe; -1 ends it, and
 * OTA_BENCH_CONNECT asks it to connect to `port` on 127.0.0.1 itself (the TCP transport).
 */
#define OTA_BENCH_CONNECT (-2)
struct client_job {
    struct mbedtls_side side;
    int socket_pipe[2];
    int failures;
    uint16_t port;
};

static double seconds_of(clockid_t clock)
{
    struct timespec now;
    clock_gettime(clock, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/*
 * As the agent treats a device's socket (listener.c, conn.c): no Nagle delay on what the
 * server writes, and a prompt acknowledgement asked for before each read while the handshake
 * waits, so that a client writing its flight a message at a time is not held up by delayed
 * ACKs. A no-op on a socketpair.
 */
static void prompt_ack(int fd)
{
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof on);
}

static void no_delay(int fd)
{
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

static bool seed(struct mbedtls_side *side, const char *personalization)
{
    mbedtls_entropy_init(&side->entropy);
    mbedtls_ctr_drbg_init(&side->random);
    mbedtls_ssl_config_init(&side->config);
    mbedtls_x509_crt_init(&side->certificate);
    mbedtls_pk_init(&side->key);
    return mbedtls_ctr_drbg_seed(&side->random, mbedtls_entropy_func, &side->entropy,
                                 (const unsigned char *)personalization,
                                 strlen(personalization)) == 0;
}

/* As the simulator configures a device: defaults, TLS 1.2 only, the server pinned. */
static bool configure_client(struct mbedtls_side *side, const char *certificate_path)
{
    if (!seed(side, "bench handshake client") ||
        mbedtls_x509_crt_parse_file(&side->certificate, certificate_path) != 0 ||
        mbedtls_ssl_config_defaults(&side->config, MBEDTLS_SSL_IS_CLIENT,
                                    MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0) {
        return false;
    }
    mbedtls_ssl_conf_min_version(&side->config, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&side->config, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_authmode(&side->config, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&side->config, &side->certificate, NULL);
    mbedtls_ssl_conf_rng(&side->config, mbedtls_ctr_drbg_random, &side->random);
    return true;
}

/* A TCP connection to 127.0.0.1:port, or -1. */
static int connect_loopback(uint16_t port)
{
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void *client_thread(void *argument)
{
    struct client_job *job = argument;
    int fd;
    while (read(job->socket_pipe[0], &fd, sizeof fd) == (ssize_t)sizeof fd && fd != -1) {
        if (fd == OTA_BENCH_CONNECT) {
            fd = connect_loopback(job->port);
            if (fd < 0) {
                job->failures++;
                continue;
            }
        }
        mbedtls_ssl_context ssl;
        mbedtls_net_context net = {.fd = fd};
        mbedtls_ssl_init(&ssl);
        bool ok = mbedtls_ssl_setup(&ssl, &job->side.config) == 0 &&
                  mbedtls_ssl_set_hostname(&ssl, "ota-agent") == 0;
        mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, mbedtls_net_recv, NULL);
        if (!ok || mbedtls_ssl_handshake(&ssl) != 0) {
            job->failures++;
        }
        mbedtls_ssl_free(&ssl);
        close(fd);
    }
    return NULL;
}

#ifdef BENCH_SERVER_OPENSSL

/* The policy's TLS 1.2 suites (or, with `groups`, its groups) as an OpenSSL ':' list. */
static void policy_list(bool groups, char *list, size_t size)
{
    size_t used = 0;
    size_t count = groups ? OTA_TLS_POLICY_GROUP_COUNT : OTA_TLS_POLICY_SUITE_COUNT;
    list[0] = '\0';
    for (size_t index = 0; index < count && used < size; index++) {
        const char *name = groups ? ota_tls_policy_groups[index].openssl_name
                                  : ota_tls_policy_suites[index].openssl_name;
        if (!groups && ota_tls_policy_suites[index].version != OTA_TLS_POLICY_VERSION_1_2) {
            continue;
        }
        int wrote = snprintf(list + used, size - used, "%s%s", used > 0 ? ":" : "", name);
        if (wrote < 0) {
            break;
        }
        used += (size_t)wrote;
    }
}

/* The agent's OpenSSL server settings (tls_openssl.c), for the handshake's sake. */
static void *make_server(const char *certificate_path, const char *key_path)
{
    char suites[512];
    char groups[128];
    policy_list(false, suites, sizeof(suites));
    policy_list(true, groups, sizeof(groups));
    SSL_CTX *context = SSL_CTX_new(TLS_server_method());
    if (context == NULL) {
        return NULL;
    }
    SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
    SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                     SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                     SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* As the agent: kernel TLS is asked for only while the kernel has the tls module. */
    if (access("/proc/net/tls_stat", F_OK) == 0) {
        SSL_CTX_set_options(context, SSL_OP_ENABLE_KTLS);
    }
    SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(context, 0);
    /* As the agent: every device is asked for an optional certificate (proof of possession). */
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER, NULL);
    bool ok = SSL_CTX_set_cipher_list(context, suites) == 1 &&
              SSL_CTX_set1_groups_list(context, groups) == 1 &&
              SSL_CTX_use_certificate_chain_file(context, certificate_path) == 1 &&
              SSL_CTX_use_PrivateKey_file(context, key_path, SSL_FILETYPE_PEM) == 1 &&
              SSL_CTX_check_private_key(context) == 1;
    if (!ok) {
        ERR_print_errors_fp(stderr);
        SSL_CTX_free(context);
        return NULL;
    }
    return context;
}

/* Before each read from the socket: a prompt acknowledgement, as the agent asks for one. */
static long ask_prompt_ack(BIO *bio, int operation, const char *data, size_t length, int flags,
                           long argument, int result, size_t *processed)
{
    (void)data, (void)length, (void)flags, (void)argument, (void)processed;
    if (operation == BIO_CB_READ) {
        prompt_ack((int)BIO_get_fd(bio, NULL));
    }
    return result;
}

static bool serve_one(void *server, int fd)
{
    SSL *ssl = SSL_new(server);
    bool ok = ssl != NULL && SSL_set_fd(ssl, fd) == 1;
    if (ok) {
        BIO_set_callback_ex(SSL_get_rbio(ssl), ask_prompt_ack);
        ok = SSL_accept(ssl) == 1;
    }
    SSL_free(ssl);
    return ok;
}

#else /* BENCH_SERVER_MBEDTLS */

/* Filled from the policy table in make_server; the config keeps pointers to them. */
static int server_suites[OTA_TLS_POLICY_SUITE_COUNT + 1];
static mbedtls_ecp_group_id server_curves[OTA_TLS_POLICY_GROUP_COUNT + 1];

static void policy_lists(void)
{
    size_t count = 0;
    for (size_t index = 0; index < OTA_TLS_POLICY_SUITE_COUNT; index++) {
        if (ota_tls_policy_suites[index].version == OTA_TLS_POLICY_VERSION_1_2) {
            server_suites[count++] = ota_tls_policy_suites[index].id;
        }
    }
    server_suites[count] = 0;
    count = 0;
    for (size_t index = 0; index < OTA_TLS_POLICY_GROUP_COUNT; index++) {
        const mbedtls_ecp_curve_info *curve =
            mbedtls_ecp_curve_info_from_tls_id(ota_tls_policy_groups[index].id);
        if (curve != NULL) {
            server_curves[count++] = curve->grp_id;
        }
    }
    server_curves[count] = MBEDTLS_ECP_DP_NONE;
}

static struct mbedtls_side server_side;

/* The agent's mbedTLS server settings (tls_mbedtls.c), for the handshake's sake. */
static void *make_server(const char *certificate_path, const char *key_path)
{
    struct mbedtls_side *side = &server_side;
    policy_lists();
    if (!seed(side, "bench handshake server") ||
        mbedtls_x509_crt_parse_file(&side->certificate, certificate_path) != 0 ||
        mbedtls_pk_parse_keyfile(&side->key, key_path, NULL) != 0 ||
        mbedtls_ssl_config_defaults(&side->config, MBEDTLS_SSL_IS_SERVER,
                                    MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0) {
        return NULL;
    }
    mbedtls_ssl_conf_min_version(&side->config, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&side->config, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&side->config, server_suites);
    mbedtls_ssl_conf_curves(&side->config, server_curves);
    mbedtls_ssl_conf_rng(&side->config, mbedtls_ctr_drbg_random, &side->random);
    mbedtls_ssl_conf_authmode(&side->config, MBEDTLS_SSL_VERIFY_NONE);
    mbedtls_ssl_conf_renegotiation(&side->config, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
    if (mbedtls_ssl_conf_own_cert(&side->config, &side->certificate, &side->key) != 0) {
        return NULL;
    }
    return side;
}

/* mbedtls_net_recv, after asking for a prompt acknowledgement as the agent does. */
static int receive_prompt_ack(void *context, unsigned char *buffer, size_t length)
{
    prompt_ack(((mbedtls_net_context *)context)->fd);
    return mbedtls_net_recv(context, buffer, length);
}

static bool serve_one(void *server, int fd)
{
    struct mbedtls_side *side = server;
    mbedtls_ssl_context ssl;
    mbedtls_net_context net = {.fd = fd};
    mbedtls_ssl_init(&ssl);
    bool ok = mbedtls_ssl_setup(&ssl, &side->config) == 0;
    mbedtls_ssl_set_bio(&ssl, &net, mbedtls_net_send, receive_prompt_ack, NULL);
    ok = ok && mbedtls_ssl_handshake(&ssl) == 0;
    mbedtls_ssl_free(&ssl);
    return ok;
}

#endif

/*
 * One handshake on a fresh socketpair; the client end goes to the client thread. Only the
 * server's own part counts towards `*cpu` (this thread's CPU seconds): making the pair and
 * handing one end over are this benchmark's plumbing, which no server does.
 */
static bool handshake_once(void *server, struct client_job *job, double *cpu)
{
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        return false;
    }
    if (write(job->socket_pipe[1], &pair[1], sizeof pair[1]) != (ssize_t)sizeof pair[1]) {
        close(pair[0]);
        close(pair[1]);
        return false;
    }
    double start = seconds_of(CLOCK_THREAD_CPUTIME_ID);
    bool ok = serve_one(server, pair[0]);
    close(pair[0]);
    *cpu += seconds_of(CLOCK_THREAD_CPUTIME_ID) - start;
    return ok;
}

/*
 * One handshake over loopback TCP, as a server does it: accept, handshake, close. The kernel's
 * work for the connection (accept, the server's segments, the close) is in the server's time.
 */
static bool handshake_once_tcp(void *server, struct client_job *job, int listener, double *cpu)
{
    /* Asking the client thread to connect is plumbing too: it stays out of `*cpu`. */
    int ask = OTA_BENCH_CONNECT;
    if (write(job->socket_pipe[1], &ask, sizeof ask) != (ssize_t)sizeof ask) {
        return false;
    }
    double start = seconds_of(CLOCK_THREAD_CPUTIME_ID);
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    no_delay(fd);
    bool ok = serve_one(server, fd);
    close(fd);
    *cpu += seconds_of(CLOCK_THREAD_CPUTIME_ID) - start;
    return ok;
}

/* A listener on 127.0.0.1 at a port the kernel picks; its port goes to `port`. */
static int listen_loopback(uint16_t *port)
{
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof address) != 0 ||
        listen(fd, 16) != 0 || getsockname(fd, (struct sockaddr *)&address, &length) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    *port = ntohs(address.sin_port);
    return fd;
}

static bool parse_options(int argc, char **argv, const char **certificate, const char **key,
                          long *count, bool *tcp)
{
    for (int index = 1; index + 1 < argc; index += 2) {
        if (strcmp(argv[index], "--cert") == 0) {
            *certificate = argv[index + 1];
        } else if (strcmp(argv[index], "--key") == 0) {
            *key = argv[index + 1];
        } else if (strcmp(argv[index], "--count") == 0) {
            *count = atol(argv[index + 1]);
        } else if (strcmp(argv[index], "--transport") == 0) {
            *tcp = strcmp(argv[index + 1], "tcp") == 0;
            if (!*tcp && strcmp(argv[index + 1], "socketpair") != 0) {
                return false;
            }
        } else {
            return false;
        }
    }
    return argc % 2 == 1 && *certificate != NULL && *key != NULL && *count > 0;
}

int main(int argc, char **argv)
{
    const char *certificate_path = NULL;
    const char *key_path = NULL;
    long count = 0;
    bool tcp = false;
    if (!parse_options(argc, argv, &certificate_path, &key_path, &count, &tcp)) {
        fputs("usage: handshake --cert PEM --key PEM --count N [--transport socketpair|tcp]\n",
              stderr);
        return 2;
    }
    static struct client_job job;
    void *server = make_server(certificate_path, key_path);
    int listener = tcp ? listen_loopback(&job.port) : -1;
    if (server == NULL || !configure_client(&job.side, certificate_path) ||
        pipe(job.socket_pipe) != 0 || (tcp && listener < 0)) {
        fputs("handshake: cannot set up the server and the client\n", stderr);
        return 1;
    }
    pthread_t client;
    if (pthread_create(&client, NULL, client_thread, &job) != 0) {
        fputs("handshake: cannot start the client thread\n", stderr);
        return 1;
    }

    /* The first handshake is a warm-up: lazy initialisation stays out of the figures. */
    double cpu = 0;
    bool ok = tcp ? handshake_once_tcp(server, &job, listener, &cpu)
                  : handshake_once(server, &job, &cpu);
    cpu = 0;
    double wall_start = seconds_of(CLOCK_MONOTONIC);
    for (long done = 0; done < count && ok; done++) {
        ok = tcp ? handshake_once_tcp(server, &job, listener, &cpu)
                 : handshake_once(server, &job, &cpu);
    }
    double wall = seconds_of(CLOCK_MONOTONIC) - wall_start;

    int end = -1;
    (void)!write(job.socket_pipe[1], &end, sizeof end);
    pthread_join(client, NULL);
    if (!ok || job.failures != 0) {
        fprintf(stderr, "handshake: a handshake failed (client failures: %d)\n", job.failures);
        return 1;
    }
    printf("handshakes=%ld server_cpu_us=%.1f wall_us=%.1f\n", count, cpu / (double)count * 1e6,
           wall / (double)count * 1e6);
    return 0;
}
