// dice-auth-verifier: a Dice-Auth compatible attestation verifier for tests and demos.
//
// The deployed Dice-Auth answers one connection at a time: a device certificate arrives as PEM
// in the body of a POST, 200 means it chains to a trusted DICE root, anything else means it
// does not. This program does the same over plain HTTP/1.1 on OpenSSL 3 libcrypto, and can
// misbehave on purpose (failures, fixed statuses, delays, silence, huge or odd answers,
// redirects) so that ota-agent's handling of a troubled verifier can be tested. With --tls-cert
// it serves https instead, optionally asking for a client certificate (libssl).
#include "channel.h"
#include "http.h"
#include "io.h"
#include "listener.h"
#include "options.h"
#include "trust.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    // A silent or trickling client may hold the one connection this long at most.
    READ_TIMEOUT_MILLISECONDS = 10 * 1000,
    // After the answer, how long and how much to keep reading what the client still sends.
    LINGER_MILLISECONDS = 1000,
    LINGER_BYTE_LIMIT = 1024 * 1024,
    TEXT_CAPACITY = 512,
    HEADERS_CAPACITY = 1200, // room for a Location of --redirect-to (its list is 1023 at most)
    ODD_BODY_LENGTH = 512,
    REASON_CAPACITY = 256, // leaves room in a body for "not verified: " and the reason
};

struct server {
    const struct verifier_options *options;
    X509_STORE *roots;
    SSL_CTX *tls; // NULL: plain HTTP
    struct http_request *request; // one buffer, reused: one connection at a time
    long requests_seen;           // numbers the log lines
    long complete_posts_seen;     // what --fail-first counts
    long answers_sent;            // what --max-requests counts
};

struct answer {
    int status;
    char extra_headers[HEADERS_CAPACITY];
    char body[TEXT_CAPACITY];
    unsigned char *large_body; // owned; when set, sent instead of body
    size_t large_body_length;
    bool truncated; // announce the body, send half of it
    bool hang;
    long delay_milliseconds; // on top of --delay-ms
    char reason[REASON_CAPACITY];
    char subject[TEXT_CAPACITY];
};

static void log_request(long number, const char *method, int status, const char *reason,
                        const char *subject, const struct channel *channel)
{
    char status_text[16] = "none";
    if (status != 0) {
        snprintf(status_text, sizeof status_text, "%d", status);
    }
    fprintf(stderr, "request=%ld method=%s status=%s reason=\"%s\" subject=\"%s\"", number,
            method[0] != '\0' ? method : "-", status_text, reason, subject);
    if (channel->peer_subject[0] != '\0') {
        fprintf(stderr, " client=\"%s\"", channel->peer_subject);
    }
    fputc('\n', stderr);
}

// An answer to a request that was refused before its body was read.
static void answer_rejection(const struct http_request *request, struct answer *answer)
{
    answer->status = request->rejection_status;
    snprintf(answer->reason, sizeof answer->reason, "%s", request->problem);
    snprintf(answer->body, sizeof answer->body, "%s\n", request->problem);
    if (answer->status == 405) {
        snprintf(answer->extra_headers, sizeof answer->extra_headers, "Allow: POST\r\n");
    }
}

// An answer chosen by --fail-first, --status or --sequence instead of by verification.
static void answer_injected(const struct verifier_options *options, int status, const char *why,
                            struct answer *answer)
{
    answer->status = status;
    snprintf(answer->reason, sizeof answer->reason, "%s", why);
    snprintf(answer->body, sizeof answer->body, "%s\n", status == 200 ? "verified" : why);
    if (options->retry_after_seconds >= 0) {
        snprintf(answer->extra_headers, sizeof answer->extra_headers, "Retry-After: %ld\r\n",
                 options->retry_after_seconds);
    }
}

// A 200 whose body is `length` bytes: printable lines for huge=, every byte value for odd.
static void answer_large_body(size_t length, bool odd, struct answer *answer)
{
    answer->status = 200;
    answer->large_body = malloc(length);
    if (answer->large_body == NULL) {
        answer->status = 500;
        snprintf(answer->reason, sizeof answer->reason, "out of memory for a large body");
        snprintf(answer->body, sizeof answer->body, "out of memory\n");
        return;
    }
    for (size_t index = 0; index < length; index++) {
        unsigned char filler = (index % 64 == 63) ? '\n' : (unsigned char)('a' + index % 26);
        answer->large_body[index] = odd ? (unsigned char)(index * 7 % 256) : filler;
    }
    answer->large_body_length = length;
    snprintf(answer->reason, sizeof answer->reason, "%s body of %zu bytes (--sequence)",
             odd ? "odd" : "huge", length);
}

static void answer_verification(X509_STORE *roots, X509 *certificate, struct answer *answer)
{
    if (certificate == NULL) {
        answer->status = 400;
        snprintf(answer->reason, sizeof answer->reason, "body is not a PEM certificate");
        snprintf(answer->body, sizeof answer->body, "body is not a PEM certificate\n");
    } else if (trust_verify(roots, certificate, answer->reason, sizeof answer->reason)) {
        answer->status = 200;
        snprintf(answer->body, sizeof answer->body, "verified\n");
    } else {
        answer->status = 401;
        snprintf(answer->body, sizeof answer->body, "not verified: %s\n", answer->reason);
    }
}

// The subject of the certificate for the log; empty when the body held none.
static void describe_device(X509 *certificate, char *subject, size_t capacity)
{
    subject[0] = '\0';
    if (certificate != NULL) {
        trust_describe_subject(certificate, subject, capacity);
    }
}

static void answer_scripted(const struct server *server, const struct scripted_answer *item,
                            X509 *certificate, struct answer *answer)
{
    const struct verifier_options *options = server->options;
    switch (item->kind) {
    case SCRIPTED_VERIFY:
        answer_verification(server->roots, certificate, answer);
        return;
    case SCRIPTED_STATUS:
        answer_injected(options, (int)item->value, "scripted status (--sequence)", answer);
        return;
    case SCRIPTED_HANG:
        answer->hang = true;
        return;
    case SCRIPTED_SLOW:
        answer_verification(server->roots, certificate, answer);
        answer->delay_milliseconds = item->value;
        return;
    case SCRIPTED_HUGE:
        answer_large_body((size_t)item->value, false, answer);
        return;
    case SCRIPTED_ODD:
        answer_large_body(ODD_BODY_LENGTH, true, answer);
        return;
    case SCRIPTED_TRUNCATED:
        answer_injected(options, 200, "truncated answer (--sequence)", answer);
        answer->truncated = true;
        return;
    case SCRIPTED_REDIRECT:
        answer_injected(options, 302, "redirect (--sequence)", answer);
        snprintf(answer->extra_headers, sizeof answer->extra_headers, "Location: %s\r\n",
                 options->redirect_location);
        return;
    }
}

static void decide_answer(struct server *server, struct answer *answer)
{
    const struct verifier_options *options = server->options;
    const struct http_request *request = server->request;
    memset(answer, 0, sizeof *answer);
    if (request->rejection_status != 0) {
        answer_rejection(request, answer);
        return;
    }
    // Parsed even when the answer is injected, so that the log names the device.
    X509 *certificate = trust_parse_pem_certificate(request->body, request->body_length);
    describe_device(certificate, answer->subject, sizeof answer->subject);
    server->complete_posts_seen++;
    if (server->complete_posts_seen <= options->sequence_length) {
        answer_scripted(server, &options->sequence[server->complete_posts_seen - 1], certificate,
                        answer);
    } else if (server->complete_posts_seen <= options->fail_first_count) {
        answer_injected(options, options->fail_status, "injected failure (--fail-first)", answer);
    } else if (options->forced_status != 0) {
        answer_injected(options, options->forced_status, "forced status (--status)", answer);
    } else {
        answer_verification(server->roots, certificate, answer);
    }
    X509_free(certificate);
}

// --hang: log the request, then keep the connection open, reading and dropping whatever comes,
// until the client gives up (or a stop is requested).
static void hang_up_on(struct channel *client, long number, const char *method,
                       const char *subject)
{
    log_request(number, method, 0, "hang: no answer will be given", subject, client);
    char scratch[4096];
    size_t received = 0;
    while (channel_receive(client, scratch, sizeof scratch, NULL, &received) == IO_DONE) {
    }
    channel_close(client);
}

static void hang_on_request(const struct server *server, struct channel *client, long number,
                            bool body_was_read)
{
    const struct http_request *request = server->request;
    char subject[TEXT_CAPACITY] = "";
    if (body_was_read) {
        X509 *certificate = trust_parse_pem_certificate(request->body, request->body_length);
        describe_device(certificate, subject, sizeof subject);
        X509_free(certificate);
    }
    hang_up_on(client, number, request->method, subject);
}

// Closing a socket with unread input makes the kernel send a reset, which can destroy the answer
// before the client has read it (after a 413 the body is still on its way). So half-close, read
// until the client closes too (bounded in time and bytes), then close.
static void close_after_answer(struct channel *client)
{
    channel_shut_down_sending(client);
    struct timespec deadline = io_deadline_after(LINGER_MILLISECONDS);
    char scratch[4096];
    size_t drained = 0;
    size_t received = 0;
    while (drained < LINGER_BYTE_LIMIT &&
           io_receive(client->fd, scratch, sizeof scratch, &deadline, &received) == IO_DONE) {
        drained += received;
    }
    channel_close(client);
}

static bool send_answer(struct channel *client, const struct answer *answer)
{
    struct http_response response = {.status = answer->status,
                                     .extra_headers = answer->extra_headers,
                                     .body = answer->body,
                                     .body_length = strlen(answer->body)};
    if (answer->large_body != NULL) {
        response.body = answer->large_body;
        response.body_length = answer->large_body_length;
    }
    response.announced_length = response.body_length;
    if (answer->truncated) {
        response.body_length /= 2;
    }
    return http_send(client, &response);
}

// Answers the request just read, after --delay-ms (and a slow= item's delay), and logs it.
static void answer_request(struct server *server, struct channel *client, long number)
{
    struct answer answer;
    decide_answer(server, &answer);
    if (answer.hang) {
        hang_up_on(client, number, server->request->method, answer.subject);
        return;
    }
    long delay = server->options->delay_milliseconds + answer.delay_milliseconds;
    if (delay > 0 && io_sleep(delay) != IO_DONE) {
        free(answer.large_body);
        channel_close(client);
        return;
    }
    bool sent = send_answer(client, &answer);
    free(answer.large_body);
    log_request(number, server->request->method, answer.status, answer.reason, answer.subject,
                client);
    if (!sent) {
        fprintf(stderr, "connection: the answer to request %ld could not be sent\n", number);
        channel_close(client);
        return;
    }
    server->answers_sent++;
    if (answer.truncated) {
        // Closed at once: a reset or an early end is the point of this answer.
        channel_close(client);
        return;
    }
    close_after_answer(client);
}

static void serve_connection(struct server *server, int fd)
{
    struct timespec read_deadline = io_deadline_after(READ_TIMEOUT_MILLISECONDS);
    struct channel client;
    char reason[REASON_CAPACITY];
    if (!channel_open(&client, fd, server->tls, &read_deadline, reason, sizeof reason)) {
        fprintf(stderr, "connection: TLS handshake failed: %s\n", reason);
        // Lingering lets the client read our alert (say, "certificate required") instead of
        // meeting a reset caused by its own unread request.
        close_after_answer(&client);
        return;
    }
    struct http_request *request = server->request;
    enum http_read_outcome outcome = http_read_request(&client, request, &read_deadline);
    if (outcome == HTTP_REQUEST_STOPPED) {
        channel_close(&client);
        return;
    }
    if (outcome == HTTP_REQUEST_ABANDONED) {
        // Not a request: port probes of test harnesses end up here too.
        fprintf(stderr, "connection: no complete request: %s\n", request->problem);
        channel_close(&client);
        return;
    }
    long number = ++server->requests_seen;
    if (server->options->hang) {
        hang_on_request(server, &client, number, outcome == HTTP_REQUEST_COMPLETE);
        return;
    }
    answer_request(server, &client, number);
}

static int serve(struct server *server, int listening_socket)
{
    long limit = server->options->max_requests;
    while (limit == 0 || server->answers_sent < limit) {
        int client = listener_accept(listening_socket);
        if (client < 0) {
            return io_stop_requested() ? 0 : 1;
        }
        serve_connection(server, client);
    }
    return 0;
}

// Listens, announces the address on stdout and serves until stopped or done.
static int run(const struct verifier_options *options, X509_STORE *roots, SSL_CTX *tls,
               struct http_request *request)
{
    char bound_address[LISTENER_ADDRESS_TEXT_CAPACITY];
    int listening_socket = listener_open(options->listen_address, options->backlog,
                                         bound_address, sizeof bound_address);
    if (listening_socket < 0) {
        return 1;
    }
    printf("listening %s\n", bound_address);
    if (fflush(stdout) != 0) {
        perror("dice-auth-verifier: stdout");
        close(listening_socket);
        return 1;
    }
    struct server server = {.options = options, .roots = roots, .tls = tls, .request = request};
    int exit_status = serve(&server, listening_socket);
    close(listening_socket);
    if (io_stop_requested()) {
        fprintf(stderr, "exiting: %s after %ld answer(s)\n", strsignal(io_stop_signal()),
                server.answers_sent);
    } else if (exit_status == 0) {
        fprintf(stderr, "exiting: --max-requests %ld reached\n", server.answers_sent);
    }
    return exit_status;
}

int main(int argc, char **argv)
{
    struct verifier_options options;
    switch (options_parse(argc, argv, &options)) {
    case OPTIONS_HELP_SHOWN:
        return 0;
    case OPTIONS_INVALID:
        return 2;
    case OPTIONS_RUN:
        break;
    }
    if (!io_install_signal_handling()) {
        perror("dice-auth-verifier: signal handling");
        return 1;
    }
    X509_STORE *roots = trust_load_roots(options.roots_directory);
    if (roots == NULL) {
        return 1;
    }
    SSL_CTX *tls = NULL;
    if (options.tls_certificate_path != NULL) {
        tls = channel_tls_context_new(options.tls_certificate_path, options.tls_key_path,
                                      options.tls_client_ca_path);
        if (tls == NULL) {
            X509_STORE_free(roots);
            return 1;
        }
    }
    struct http_request *request = malloc(sizeof *request);
    int exit_status = 1;
    if (request == NULL) {
        fputs("dice-auth-verifier: out of memory\n", stderr);
    } else {
        exit_status = run(&options, roots, tls, request);
    }
    free(request);
    SSL_CTX_free(tls);
    X509_STORE_free(roots);
    return exit_status;
}
