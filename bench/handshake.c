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
 *
 * With `--update PORT --image FILE --device-cert DER` (TCP only), each connection is instead
 * the least a server must do for one update, with nothing of the agent's: after the handshake
 * it reads the device's DER certificate (framed by its header, with the core's der.c), asks the
 * Dice-Auth compatible verifier on 127.0.0.1:PORT over a new connection (one blocking HTTP/1.1
 * POST of the PEM, raw sockets, an answer of 200 wanted), writes the image from memory in 16 KiB records, sends
 * close_notify and its FIN, and waits for the client's close. The client sends the certificate
 * and checks it got the image's size. That is the floor under the agent's CPU per update.
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

/* The agent's suites and groups in its order, by path so that scripts/bench's cc needs no -I;
 * and the core's certificate framing and PEM (der.c, built beside this file by scripts/bench),
 * so that the --update floor frames and posts the certificate exactly as the agent does. */
#include "../CSources/OTACore/include/ota_core.h"
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
    /* --update: what the client sends, and how much it must receive */
    const unsigned char *device_der;
    size_t device_der_size;
    size_t image_size;
};

/* What a server needs for --update. */
struct update_plan {
    uint16_t verifier_port;
    const unsigned char *image;
    size_t image_size;
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

/* --update, the device's side: its certificate out, then the image in, to the close. */
static bool client_update(mbedtls_ssl_context *ssl, const struct client_job *job)
{
    size_t sent = 0;
    while (sent < job->device_der_size) {
        int written = mbedtls_ssl_write(ssl, job->device_der + sent, job->device_der_size - sent);
        if (written <= 0) {
            return false;
        }
        sent += (size_t)written;
    }
    unsigned char buffer[16384];
    size_t received = 0;
    for (;;) {
        int got = mbedtls_ssl_read(ssl, buffer, sizeof buffer);
        if (got > 0) {
            received += (size_t)got;
        } else if (got == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || got == 0) {
            return received == job->image_size;
        } else {
            return false;
        }
    }
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
        } else if (job->device_der != NULL && !client_update(&ssl, job)) {
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

/* The server's side of one connection: an SSL, on a blocking socket. */
static void *session_start(void *server, int fd)
{
    SSL *ssl = SSL_new(server);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    BIO_set_callback_ex(SSL_get_rbio(ssl), ask_prompt_ack);
    return ssl;
}

static bool session_handshake(void *session)
{
    return SSL_accept(session) == 1;
}

static long session_read(void *session, unsigned char *buffer, size_t length)
{
    size_t got = 0;
    return SSL_read_ex(session, buffer, length, &got) == 1 ? (long)got : -1;
}

static bool session_write(void *session, const unsigned char *data, size_t length)
{
    size_t written = 0;
    return SSL_write_ex(session, data, length, &written) == 1 && written == length;
}

static void session_close_notify(void *session)
{
    (void)SSL_shutdown(session);
}

static void session_end(void *session)
{
    SSL_free(session);
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

/* The server's side of one connection: an mbedTLS context on a blocking socket. */
struct server_session {
    mbedtls_ssl_context ssl;
    mbedtls_net_context net;
};

static void *session_start(void *server, int fd)
{
    struct mbedtls_side *side = server;
    struct server_session *session = calloc(1, sizeof *session);
    if (session == NULL) {
        return NULL;
    }
    session->net.fd = fd;
    mbedtls_ssl_init(&session->ssl);
    if (mbedtls_ssl_setup(&session->ssl, &side->config) != 0) {
        mbedtls_ssl_free(&session->ssl);
        free(session);
        return NULL;
    }
    mbedtls_ssl_set_bio(&session->ssl, &session->net, mbedtls_net_send, receive_prompt_ack, NULL);
    return session;
}

static bool session_handshake(void *session)
{
    return mbedtls_ssl_handshake(&((struct server_session *)session)->ssl) == 0;
}

static long session_read(void *session, unsigned char *buffer, size_t length)
{
    int got = mbedtls_ssl_read(&((struct server_session *)session)->ssl, buffer, length);
    return got > 0 ? got : -1;
}

static bool session_write(void *session, const unsigned char *data, size_t length)
{
    for (size_t done = 0; done < length;) {
        int written = mbedtls_ssl_write(&((struct server_session *)session)->ssl, data + done,
                                        length - done);
        if (written <= 0) {
            return false;
        }
        done += (size_t)written;
    }
    return true;
}

static void session_close_notify(void *session)
{
    (void)mbedtls_ssl_close_notify(&((struct server_session *)session)->ssl);
}

static void session_end(void *session)
{
    if (session != NULL) {
        mbedtls_ssl_free(&((struct server_session *)session)->ssl);
        free(session);
    }
}

#endif

/* A bare handshake: the session set up, the handshake, the session freed. */
static bool serve_one(void *server, int fd)
{
    void *session = session_start(server, fd);
    bool ok = session != NULL && session_handshake(session);
    session_end(session);
    return ok;
}

static bool write_all(int fd, const char *data, size_t length)
{
    for (size_t done = 0; done < length;) {
        ssize_t written = write(fd, data + done, length - done);
        if (written <= 0) {
            return false;
        }
        done += (size_t)written;
    }
    return true;
}

/* One POST of the certificate to the verifier over a new connection; true for a 200. */
static bool ask_dice_auth(uint16_t port, const unsigned char *der, size_t length)
{
    char pem[OTA_DER_MAX_LENGTH * 2];
    size_t pem_length = 0;
    if (ota_der_to_pem(der, length, pem, sizeof pem, &pem_length) != OTA_OK) {
        return false;
    }
    char request[sizeof pem + 256];
    int head = snprintf(request, sizeof request,
                        "POST /verify HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
                        "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
                        (unsigned)port, pem_length);
    memcpy(request + head, pem, pem_length);

    int fd = connect_loopback(port);
    if (fd < 0) {
        return false;
    }
    no_delay(fd);
    bool ok = write_all(fd, request, (size_t)head + pem_length);
    char answer[1024];
    size_t got = 0;
    ssize_t count;
    while (ok && got < sizeof answer - 1 && (count = read(fd, answer + got,
                                                          sizeof answer - 1 - got)) > 0) {
        got += (size_t)count;
    }
    answer[got] = '\0';
    close(fd);
    return ok && strncmp(answer, "HTTP/1.1 200 ", 13) == 0;
}

/* The device's certificate, framed by its DER header as the agent frames it (conn.c): read no
 * further than the framing asks. Its length, or 0. */
static size_t read_certificate(void *session, unsigned char *der)
{
    size_t filled = 0;
    for (;;) {
        size_t needed = 0;
        ota_der_state state = ota_der_frame(der, filled, OTA_DER_MAX_LENGTH, &needed, NULL);
        if (state != OTA_DER_NEED_MORE) {
            return state == OTA_DER_COMPLETE ? filled : 0;
        }
        long got = session_read(session, der + filled, needed - filled);
        if (got <= 0) {
            return 0;
        }
        filled += (size_t)got;
    }
}

/* --update: the least a server does for one update (see the top of this file). */
static bool serve_update(void *server, int fd, const struct update_plan *plan)
{
    void *session = session_start(server, fd);
    bool ok = session != NULL && session_handshake(session);

    unsigned char der[OTA_DER_MAX_LENGTH];
    size_t der_length = ok ? read_certificate(session, der) : 0;
    ok = der_length > 0 && ask_dice_auth(plan->verifier_port, der, der_length);

    for (size_t offset = 0; ok && offset < plan->image_size; offset += 16384) {
        size_t left = plan->image_size - offset;
        ok = session_write(session, plan->image + offset, left < 16384 ? left : 16384);
    }
    if (ok) {
        session_close_notify(session);
        shutdown(fd, SHUT_WR);
        char drain[512];
        while (read(fd, drain, sizeof drain) > 0) {
        }
    }
    session_end(session);
    return ok;
}

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
static bool handshake_once_tcp(void *server, struct client_job *job, int listener,
                               const struct update_plan *plan, double *cpu)
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
    bool ok = plan != NULL ? serve_update(server, fd, plan) : serve_one(server, fd);
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

struct options {
    const char *certificate;
    const char *key;
    long count;
    bool tcp;
    long verifier_port; /* --update; 0 without */
    const char *image;
    const char *device_cert;
};

static bool parse_options(int argc, char **argv, struct options *options)
{
    const char **certificate = &options->certificate, **key = &options->key;
    long *count = &options->count;
    bool *tcp = &options->tcp;
    for (int index = 1; index + 1 < argc; index += 2) {
        if (strcmp(argv[index], "--update") == 0) {
            options->verifier_port = atol(argv[index + 1]);
        } else if (strcmp(argv[index], "--image") == 0) {
            options->image = argv[index + 1];
        } else if (strcmp(argv[index], "--device-cert") == 0) {
            options->device_cert = argv[index + 1];
        } else if (strcmp(argv[index], "--cert") == 0) {
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
    bool update = options->verifier_port != 0;
    bool update_complete = options->verifier_port > 0 && options->verifier_port < 65536 &&
                           options->image != NULL && options->device_cert != NULL && *tcp;
    return argc % 2 == 1 && *certificate != NULL && *key != NULL && *count > 0 &&
           (update ? update_complete : options->image == NULL && options->device_cert == NULL);
}

/* A whole small file into a new buffer; NULL when it cannot be read. */
static unsigned char *load(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        return NULL;
    }
    unsigned char *data = NULL;
    if (fseek(file, 0, SEEK_END) == 0) {
        long length = ftell(file);
        data = length > 0 ? malloc((size_t)length) : NULL;
        if (data != NULL && (fseek(file, 0, SEEK_SET) != 0 ||
                             fread(data, 1, (size_t)length, file) != (size_t)length)) {
            free(data);
            data = NULL;
        }
        *size = length > 0 ? (size_t)length : 0;
    }
    fclose(file);
    return data;
}

int main(int argc, char **argv)
{
    struct options options = {0};
    if (!parse_options(argc, argv, &options)) {
        fputs("usage: handshake --cert PEM --key PEM --count N [--transport socketpair|tcp]\n"
              "         [--update VERIFIER_PORT --image FILE --device-cert DER] (tcp only)\n",
              stderr);
        return 2;
    }
    const char *certificate_path = options.certificate;
    const char *key_path = options.key;
    long count = options.count;
    bool tcp = options.tcp;
    static struct client_job job;
    struct update_plan plan = {.verifier_port = (uint16_t)options.verifier_port};
    if (options.verifier_port != 0) {
        plan.image = load(options.image, &plan.image_size);
        job.device_der = load(options.device_cert, &job.device_der_size);
        job.image_size = plan.image_size;
        if (plan.image == NULL || job.device_der == NULL) {
            fputs("handshake: cannot read the image or the device certificate\n", stderr);
            return 1;
        }
    }
    const struct update_plan *update = options.verifier_port != 0 ? &plan : NULL;
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
    bool ok = tcp ? handshake_once_tcp(server, &job, listener, update, &cpu)
                  : handshake_once(server, &job, &cpu);
    cpu = 0;
    double wall_start = seconds_of(CLOCK_MONOTONIC);
    for (long done = 0; done < count && ok; done++) {
        ok = tcp ? handshake_once_tcp(server, &job, listener, update, &cpu)
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
