/*
 * One simulated ESP32 field device on mbedTLS 2.28, configured the way the devices are:
 * TLS 1.2 only, default ciphersuites, the agent's certificate pinned as the only trusted CA,
 * the server name checked. Each device owns all its mbedTLS state (including its random
 * generator), so devices on different threads share nothing but read-only inputs.
 */
#include "device.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "transport.h"

/* A progress line on stderr each time this many more image bytes have arrived. */
#define PROGRESS_INTERVAL (256ULL * 1024ULL)

struct device_session {
    struct device_job *job;
    struct device_result *result;
    struct transport transport;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context random;
    mbedtls_x509_crt trusted_ca;
    mbedtls_x509_crt own_certificate; /* --proof: presented in the handshake */
    mbedtls_pk_context own_key;
    mbedtls_ssl_config config;
    mbedtls_ssl_context ssl;
    mbedtls_sha256_context image_hash;
    unsigned char *read_buffer;       /* --read-size bytes: all the image memory a device has */
};

static void progress(const struct device_session *session, const char *format_text, ...)
    __attribute__((format(printf, 2, 3)));

static void progress(const struct device_session *session, const char *format_text, ...)
{
    if (session->job->options->quiet) {
        return;
    }
    va_list arguments;
    va_start(arguments, format_text);
    flockfile(stderr); /* keeps each line whole when many devices report at once */
    fprintf(stderr, "device %u: ", session->job->device_number);
    vfprintf(stderr, format_text, arguments);
    fputc('\n', stderr);
    funlockfile(stderr);
    va_end(arguments);
}

static void fail(struct device_session *session, enum device_phase phase,
                 const char *format_text, ...) __attribute__((format(printf, 3, 4)));

static void fail(struct device_session *session, enum device_phase phase,
                 const char *format_text, ...)
{
    va_list arguments;
    va_start(arguments, format_text);
    session->result->outcome = OUTCOME_ERROR;
    session->result->phase = phase;
    vsnprintf(session->result->detail, sizeof session->result->detail, format_text, arguments);
    va_end(arguments);
}

static void fail_timeout(struct device_session *session, enum device_phase phase)
{
    fail(session, phase, "timed out after %u ms", session->job->options->timeout_ms);
}

/*
 * The description byte of the alert mbedTLS has just reported as
 * MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE. mbedTLS 2.x has no accessor for it, but the record
 * is still in the (public) input buffer: level, then description.
 */
static int received_alert(const mbedtls_ssl_context *ssl)
{
    if (ssl->in_msg == NULL || ssl->in_msglen < 2) {
        return -1;
    }
    return ssl->in_msg[1];
}

/* Why the server certificate was rejected, e.g. the name did not match, on one line. */
static void describe_verification(const mbedtls_ssl_context *ssl, char *text, size_t size)
{
    uint32_t flags = mbedtls_ssl_get_verify_result(ssl);
    if (mbedtls_x509_crt_verify_info(text, size, "", flags) < 0) {
        snprintf(text, size, "verification flags 0x%08x", (unsigned) flags);
        return;
    }
    /* One line per reason comes back; the report wants one line. */
    for (char *character = text; *character != '\0'; character++) {
        if (*character == '\n') {
            *character = character[1] == '\0' ? '\0' : ';';
        }
    }
}

/* Records an mbedTLS failure, adding what the bare error code does not say. */
static void fail_tls(struct device_session *session, enum device_phase phase, int status)
{
    if (status == MBEDTLS_ERR_SSL_TIMEOUT) {
        fail_timeout(session, phase);
        return;
    }
    char text[200];
    char extra[280] = "";
    mbedtls_strerror(status, text, sizeof text);
    switch (status) {
    case MBEDTLS_ERR_NET_CONN_RESET:
    case MBEDTLS_ERR_NET_SEND_FAILED:
    case MBEDTLS_ERR_NET_RECV_FAILED:
        if (session->transport.last_errno != 0) {
            char errno_text[128];
            snprintf(extra, sizeof extra, "%s", describe_errno(session->transport.last_errno,
                                                               errno_text, sizeof errno_text));
        }
        break;
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
        snprintf(extra, sizeof extra, "alert %d", received_alert(&session->ssl));
        break;
    case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
        describe_verification(&session->ssl, extra, sizeof extra);
        break;
    default:
        break;
    }
    if (extra[0] != '\0') {
        fail(session, phase, "%s (%s)", text, extra);
    } else {
        fail(session, phase, "%s", text);
    }
}

static void session_init(struct device_session *session, struct device_job *job,
                         uint64_t deadline_ms)
{
    session->job = job;
    session->result = &job->result;
    transport_init(&session->transport, deadline_ms);
    session->transport.source_address = job->options->source_address;
    mbedtls_entropy_init(&session->entropy);
    mbedtls_ctr_drbg_init(&session->random);
    mbedtls_x509_crt_init(&session->trusted_ca);
    mbedtls_x509_crt_init(&session->own_certificate);
    mbedtls_pk_init(&session->own_key);
    mbedtls_ssl_config_init(&session->config);
    mbedtls_ssl_init(&session->ssl);
    mbedtls_sha256_init(&session->image_hash);
    mbedtls_sha256_starts_ret(&session->image_hash, 0);
    session->read_buffer = malloc(job->options->read_size);
}

static void session_free(struct device_session *session)
{
    transport_close(&session->transport);
    free(session->read_buffer);
    mbedtls_sha256_free(&session->image_hash);
    mbedtls_ssl_free(&session->ssl);
    mbedtls_ssl_config_free(&session->config);
    mbedtls_pk_free(&session->own_key);
    mbedtls_x509_crt_free(&session->own_certificate);
    mbedtls_x509_crt_free(&session->trusted_ca);
    mbedtls_ctr_drbg_free(&session->random);
    mbedtls_entropy_free(&session->entropy);
}

/*
 * --proof: the certificate goes out as the TLS client certificate when the server asks for
 * one, and the key signs the handshake (CertificateVerify). mbedTLS does not check that the
 * two belong together, which is what lets a test play a device that copied a certificate
 * without its key (--handshake-key with another key).
 */
static int present_own_certificate(struct device_session *session)
{
    const struct shared_inputs *inputs = session->job->inputs;
    int status = parse_client_certificate(inputs, &session->own_certificate);
    if (status == 0) {
        status = parse_client_key(inputs, &session->own_key);
    }
    if (status == 0) {
        status = mbedtls_ssl_conf_own_cert(&session->config, &session->own_certificate,
                                           &session->own_key);
    }
    return status;
}

/* TLS 1.2 only, the pinned certificate as the sole trust anchor, the server name checked. */
static int configure_tls(struct device_session *session)
{
    const struct device_job *job = session->job;
    char personalization[48];
    int length = snprintf(personalization, sizeof personalization, "ota-device-sim device %u",
                          job->device_number);
    int status = mbedtls_ctr_drbg_seed(&session->random, mbedtls_entropy_func, &session->entropy,
                                       (const unsigned char *) personalization, (size_t) length);
    if (status == 0) {
        status = mbedtls_x509_crt_parse(&session->trusted_ca, job->inputs->trusted_ca,
                                        job->inputs->trusted_ca_length);
    }
    if (status == 0) {
        status = mbedtls_ssl_config_defaults(&session->config, MBEDTLS_SSL_IS_CLIENT,
                                             MBEDTLS_SSL_TRANSPORT_STREAM,
                                             MBEDTLS_SSL_PRESET_DEFAULT);
    }
    if (status != 0) {
        return status;
    }
    mbedtls_ssl_conf_min_version(&session->config, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&session->config, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_authmode(&session->config, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&session->config, &session->trusted_ca, NULL);
    mbedtls_ssl_conf_rng(&session->config, mbedtls_ctr_drbg_random, &session->random);
    if (session->job->options->max_fragment_code != MBEDTLS_SSL_MAX_FRAG_LEN_NONE) {
        /* Asks the agent for smaller records, as memory-starved devices may. */
        mbedtls_ssl_conf_max_frag_len(&session->config,
                                      (unsigned char)session->job->options->max_fragment_code);
    }
    if (session->job->options->proof) {
        status = present_own_certificate(session);
        if (status != 0) {
            return status;
        }
    }
    status = mbedtls_ssl_setup(&session->ssl, &session->config);
    if (status == 0) {
        status = mbedtls_ssl_set_hostname(&session->ssl, job->options->server_name);
    }
    return status;
}

static bool connect_device(struct device_session *session)
{
    const struct sim_options *options = session->job->options;
    int status = configure_tls(session);
    if (status != 0) {
        fail_tls(session, PHASE_CONNECT, status);
        return false;
    }
    char detail[DETAIL_CAPACITY];
    if (!transport_connect(&session->transport, options->host, options->port,
                           detail, sizeof detail)) {
        if (transport_remaining_ms(&session->transport) == 0) {
            fail_timeout(session, PHASE_CONNECT);
        } else {
            fail(session, PHASE_CONNECT, "%s", detail);
        }
        return false;
    }
    mbedtls_ssl_set_bio(&session->ssl, &session->transport, transport_send, transport_receive,
                        NULL);
    progress(session, "connected to %s port %s", options->host, options->port);
    return true;
}

static bool perform_handshake(struct device_session *session)
{
    int status;
    do {
        status = mbedtls_ssl_handshake(&session->ssl);
    } while (status == MBEDTLS_ERR_SSL_WANT_READ || status == MBEDTLS_ERR_SSL_WANT_WRITE);
    if (status != 0) {
        fail_tls(session, PHASE_HANDSHAKE, status);
        return false;
    }
    progress(session, "handshake done: %s %s, server certificate verified",
             mbedtls_ssl_get_version(&session->ssl), mbedtls_ssl_get_ciphersuite(&session->ssl));
    return true;
}

/* Writes a whole piece; mbedTLS takes at most one record's worth per call. 0 or an error. */
static int write_piece(mbedtls_ssl_context *ssl, const unsigned char *piece, size_t length)
{
    size_t written = 0;
    while (written < length) {
        int status = mbedtls_ssl_write(ssl, piece + written, length - written);
        if (status == MBEDTLS_ERR_SSL_WANT_READ || status == MBEDTLS_ERR_SSL_WANT_WRITE) {
            continue;
        }
        if (status < 0) {
            return status;
        }
        written += (size_t) status;
    }
    return 0;
}

/*
 * A write failed. The agent may refuse a device before it has read everything (at the first
 * bad byte of a garbage payload, say), and then its closing of the socket resets the
 * connection under the device's feet. Its alert or close_notify is usually still in the
 * receive queue, though: finding one makes this a refusal, anything else is the send error.
 */
static void look_for_refusal(struct device_session *session, int send_status)
{
    int send_errno = session->transport.last_errno;
    if (send_status != MBEDTLS_ERR_SSL_TIMEOUT) {
        int status = mbedtls_ssl_read(&session->ssl, session->read_buffer,
                                      session->job->options->read_size);
        if (status == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
            session->result->end = END_CLOSE_NOTIFY;
            return;
        }
        if (status == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE) {
            session->result->end = END_ALERT;
            session->result->alert_description = received_alert(&session->ssl);
            return;
        }
    }
    session->transport.last_errno = send_errno;
    fail_tls(session, PHASE_SEND, send_status);
}

/*
 * Sends --empty-records records without payload. TLS allows them (old OpenSSL sent them to
 * randomise CBC IVs), and a hostile client may send them in place of any data at all.
 */
static bool send_empty_records(struct device_session *session)
{
    const unsigned char nothing[1] = {0}; /* mbedTLS copies from it, even zero bytes */
    for (unsigned sent = 0; sent < session->job->options->empty_records; sent++) {
        int status;
        do {
            status = mbedtls_ssl_write(&session->ssl, nothing, 0);
        } while (status == MBEDTLS_ERR_SSL_WANT_READ || status == MBEDTLS_ERR_SSL_WANT_WRITE);
        if (status < 0) {
            look_for_refusal(session, status);
            return false;
        }
    }
    if (session->job->options->empty_records > 0) {
        progress(session, "sent %u empty record(s)", session->job->options->empty_records);
    }
    return true;
}

/* Sends the certificate (or payload) as --chunk and --pause-ms say. True: go on to read. */
static bool send_message(struct device_session *session)
{
    const struct sim_options *options = session->job->options;
    const struct shared_inputs *inputs = session->job->inputs;
    if (options->delay_ms > 0 && !transport_sleep(&session->transport, options->delay_ms)) {
        fail_timeout(session, PHASE_SEND);
        return false;
    }
    if (!send_empty_records(session)) {
        return false;
    }
    size_t piece_size = options->chunk_size > 0 ? options->chunk_size : inputs->message_length;
    size_t offset = 0;
    unsigned piece_count = 0;
    while (offset < inputs->message_length) {
        if (piece_count > 0 && options->pause_ms > 0 &&
            !transport_sleep(&session->transport, options->pause_ms)) {
            fail_timeout(session, PHASE_SEND);
            return false;
        }
        size_t left = inputs->message_length - offset;
        size_t length = piece_size < left ? piece_size : left;
        int status = write_piece(&session->ssl, inputs->message + offset, length);
        if (status != 0) {
            look_for_refusal(session, status);
            return false;
        }
        offset += length;
        piece_count++;
    }
    progress(session, "sent %zu bytes in %u piece(s)", inputs->message_length, piece_count);
    return true;
}

/* Hashes and keeps one read's worth of image. False when the output file refuses it. */
static bool take_image_bytes(struct device_session *session, size_t count)
{
    mbedtls_sha256_update_ret(&session->image_hash, session->read_buffer, count);
    FILE *output = session->job->output;
    if (output != NULL && fwrite(session->read_buffer, 1, count, output) != count) {
        char text[128];
        fail(session, PHASE_RECEIVE, "writing the output file: %s",
             describe_errno(errno, text, sizeof text));
        return false;
    }
    unsigned long long before = session->result->byte_count;
    session->result->byte_count += count;
    if (count > session->result->largest_read) {
        session->result->largest_read = count;
    }
    if (before / PROGRESS_INTERVAL != session->result->byte_count / PROGRESS_INTERVAL) {
        progress(session, "received %llu bytes", session->result->byte_count);
    }
    return true;
}

/*
 * Ends the connection from the device's side, as --hang-up asks: a device that gives up,
 * crashes or loses power. With close, the kernel still turns the close into a reset when
 * image bytes are left unread, as it would for a real device.
 */
static void hang_up(struct device_session *session)
{
    if (session->job->options->hang_up == HANG_UP_CLOSE) {
        (void) mbedtls_ssl_close_notify(&session->ssl);
        transport_close(&session->transport);
    } else {
        transport_reset(&session->transport);
    }
    session->result->outcome = OUTCOME_HUNG_UP;
    progress(session, "hung up (%s) after %llu image bytes",
             session->job->options->hang_up == HANG_UP_CLOSE ? "close" : "reset",
             session->result->byte_count);
}

static bool time_to_hang_up(const struct device_session *session)
{
    const struct sim_options *options = session->job->options;
    return options->hang_up != HANG_UP_NONE &&
           session->result->byte_count >= options->hang_up_after;
}

/*
 * Reads the image until the stream ends. A clean end (close_notify, or plain EOF as the
 * field devices accept it) returns true; so does a fatal alert before any byte, which is
 * how the agent refuses a device.
 */
static bool receive_image(struct device_session *session)
{
    struct device_result *result = session->result;
    unsigned pause_ms = session->job->options->read_pause_ms;
    for (;;) {
        if (time_to_hang_up(session)) {
            hang_up(session);
            return false;
        }
        if (pause_ms > 0 && result->byte_count > 0 &&
            !transport_sleep(&session->transport, pause_ms)) {
            fail_timeout(session, PHASE_RECEIVE);
            return false;
        }
        int status = mbedtls_ssl_read(&session->ssl, session->read_buffer,
                                      session->job->options->read_size);
        if (status > 0) {
            if (!take_image_bytes(session, (size_t) status)) {
                return false;
            }
        } else if (status == 0) {
            result->end = END_EOF;
            return true;
        } else if (status == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
            result->end = END_CLOSE_NOTIFY;
            return true;
        } else if (status == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE && result->byte_count == 0) {
            result->end = END_ALERT;
            result->alert_description = received_alert(&session->ssl);
            return true;
        } else if (status != MBEDTLS_ERR_SSL_WANT_READ && status != MBEDTLS_ERR_SSL_WANT_WRITE) {
            fail_tls(session, PHASE_RECEIVE, status);
            return false;
        }
    }
}

/*
 * The server has ended the stream cleanly; answer with our own close_notify, as a polite
 * client does. It is best effort: the server may already be gone, which changes nothing.
 */
static void close_politely(struct device_session *session)
{
    if (session->result->end == END_CLOSE_NOTIFY || session->result->end == END_EOF) {
        (void) mbedtls_ssl_close_notify(&session->ssl);
    }
}

/* Settles the outcome of a device that did not fail, from what it received. */
static void classify(struct device_session *session)
{
    struct device_result *result = session->result;
    const struct sim_options *options = session->job->options;
    if (result->outcome == OUTCOME_ERROR || result->outcome == OUTCOME_HUNG_UP) {
        return;
    }
    if (result->byte_count == 0) {
        result->outcome = OUTCOME_REFUSED;
    } else if (options->has_expected_sha256 &&
               memcmp(result->sha256, options->expected_sha256, SHA256_LENGTH) != 0) {
        result->outcome = OUTCOME_MISMATCH;
    } else {
        result->outcome = OUTCOME_UPDATED;
    }
}

static void flush_output(struct device_session *session)
{
    FILE *output = session->job->output;
    if (output != NULL && fflush(output) != 0 && session->result->outcome != OUTCOME_ERROR) {
        char text[128];
        fail(session, PHASE_RECEIVE, "writing the output file: %s",
             describe_errno(errno, text, sizeof text));
    }
}

void run_device(struct device_job *job)
{
    uint64_t started_ms = monotonic_ms();
    struct device_result *result = &job->result;
    memset(result, 0, sizeof *result);
    result->device_number = job->device_number;
    result->outcome = OUTCOME_UPDATED; /* provisional: classify() or fail() settles it */
    result->end = END_NONE;

    struct device_session session;
    session_init(&session, job, started_ms + job->options->timeout_ms);
    if (session.read_buffer == NULL) {
        fail(&session, PHASE_CONNECT, "out of memory for the read buffer");
    } else if (connect_device(&session) && perform_handshake(&session) &&
               send_message(&session) && receive_image(&session)) {
        close_politely(&session);
    }
    flush_output(&session);
    mbedtls_sha256_finish_ret(&session.image_hash, result->sha256);
    classify(&session);
    result->elapsed_ms = monotonic_ms() - started_ms;
    session_free(&session);
}
