// Reading one HTTP/1.1 request and writing one answer. Deliberately strict: the verifier is a
// test peer, so anything ambiguous is refused with a clear status rather than guessed at.
#include "http.h"
#include "io.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

// An answer the client does not read within this time is dropped.
enum { WRITE_TIMEOUT_MILLISECONDS = 10 * 1000 };

static enum http_read_outcome reject(struct http_request *request, int status,
                                     const char *problem)
{
    request->rejection_status = status;
    request->problem = problem;
    return HTTP_REQUEST_REJECTED;
}

static enum http_read_outcome abandon(struct http_request *request, enum io_result result)
{
    switch (result) {
    case IO_STOPPED:
        request->problem = "stopped";
        return HTTP_REQUEST_STOPPED;
    case IO_END_OF_STREAM:
        request->problem = "the client closed before a complete request";
        break;
    case IO_TIMED_OUT:
        request->problem = "read timeout";
        break;
    default:
        request->problem = "the connection failed";
        break;
    }
    return HTTP_REQUEST_ABANDONED;
}

// Finds the blank line that ends the head; accepts bare LF line ends as well as CRLF.
static bool find_head_end(const char *data, size_t length, size_t *head_length)
{
    for (size_t index = 0; index + 1 < length; index++) {
        if (data[index] != '\n') {
            continue;
        }
        if (data[index + 1] == '\n') {
            *head_length = index + 2;
            return true;
        }
        if (data[index + 1] == '\r' && index + 2 < length && data[index + 2] == '\n') {
            *head_length = index + 3;
            return true;
        }
    }
    return false;
}

// Moves bytes that arrived after the head into the body buffer, then ends the head with NUL.
static void separate_early_body(struct http_request *request)
{
    size_t early = request->head_received - request->head_length;
    if (early > HTTP_BODY_CAPACITY) {
        early = HTTP_BODY_CAPACITY;
    }
    memcpy(request->body, request->head + request->head_length, early);
    request->body_length = early;
    request->head[request->head_length] = '\0';
}

static enum http_read_outcome read_head(struct channel *channel, struct http_request *request,
                                        const struct timespec *deadline)
{
    for (;;) {
        size_t room = HTTP_HEAD_CAPACITY - request->head_received;
        if (room == 0) {
            return reject(request, 431, "request head larger than 16 KiB");
        }
        size_t received = 0;
        enum io_result result =
            channel_receive(channel, request->head + request->head_received, room, deadline,
                            &received);
        if (result != IO_DONE) {
            return abandon(request, result);
        }
        request->head_received += received;
        if (find_head_end(request->head, request->head_received, &request->head_length)) {
            separate_early_body(request);
            return HTTP_REQUEST_COMPLETE;
        }
    }
}

// The characters RFC 9110 allows in a token (method and header names).
static bool is_token(const char *text, size_t length)
{
    if (length == 0) {
        return false;
    }
    for (size_t index = 0; index < length; index++) {
        unsigned char character = (unsigned char)text[index];
        if (!isalnum(character) && strchr("!#$%&'*+-.^_`|~", character) == NULL) {
            return false;
        }
    }
    return true;
}

static bool has_control_characters(const char *text)
{
    for (; *text != '\0'; text++) {
        unsigned char character = (unsigned char)*text;
        if ((character < 0x20 && character != '\t') || character == 0x7f) {
            return true;
        }
    }
    return false;
}

// Returns the next line with its CR LF removed, or NULL at the end of the head.
static char *next_line(char **cursor)
{
    char *line = *cursor;
    char *line_feed = strchr(line, '\n');
    if (line_feed == NULL) {
        return NULL;
    }
    *line_feed = '\0';
    if (line_feed > line && line_feed[-1] == '\r') {
        line_feed[-1] = '\0';
    }
    *cursor = line_feed + 1;
    return line;
}

// "METHOD SP TARGET SP HTTP/1.x", nothing more, nothing less.
static bool parse_request_line(char *line, struct http_request *request)
{
    char *first_space = strchr(line, ' ');
    char *second_space = first_space != NULL ? strchr(first_space + 1, ' ') : NULL;
    if (second_space == NULL) {
        return false;
    }
    *first_space = '\0';
    *second_space = '\0';
    const char *target = first_space + 1;
    const char *version = second_space + 1;
    size_t method_length = strlen(line);
    if (!is_token(line, method_length) || method_length >= sizeof request->method ||
        *target == '\0' || has_control_characters(target) ||
        (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0)) {
        return false;
    }
    memcpy(request->method, line, method_length + 1);
    return true;
}

// Digits only; a repeated header must repeat the same value (RFC 9112, section 6.3).
static bool parse_content_length(const char *value, struct http_request *request)
{
    if (*value == '\0') {
        return false;
    }
    unsigned long long length = 0;
    for (const char *digit = value; *digit != '\0'; digit++) {
        if (!isdigit((unsigned char)*digit) || length > (1ULL << 40)) {
            return false;
        }
        length = length * 10 + (unsigned long long)(*digit - '0');
    }
    if (request->has_content_length && request->content_length != length) {
        return false;
    }
    request->has_content_length = true;
    request->content_length = (size_t)length;
    return true;
}

static char *trim_blanks(char *text)
{
    while (*text == ' ' || *text == '\t') {
        text++;
    }
    size_t length = strlen(text);
    while (length > 0 && (text[length - 1] == ' ' || text[length - 1] == '\t')) {
        text[--length] = '\0';
    }
    return text;
}

// "Name: value". A name with blanks before the colon, or a folded line, is not a token.
// Returns NULL when the line is fine, else what is wrong with it.
static const char *parse_header_line(char *line, struct http_request *request)
{
    char *colon = strchr(line, ':');
    if (colon == NULL || !is_token(line, (size_t)(colon - line))) {
        return "malformed header line";
    }
    *colon = '\0';
    char *value = trim_blanks(colon + 1);
    if (has_control_characters(value)) {
        return "control character in a header value";
    }
    if (strcasecmp(line, "Content-Length") == 0) {
        return parse_content_length(value, request) ? NULL : "invalid Content-Length";
    }
    if (strcasecmp(line, "Transfer-Encoding") == 0) {
        request->has_transfer_encoding = true;
    } else if (strcasecmp(line, "Expect") == 0) {
        if (strcasecmp(value, "100-continue") == 0) {
            request->expects_continue = true;
        } else {
            request->has_other_expectation = true;
        }
    }
    return NULL;
}

static enum http_read_outcome parse_head(struct http_request *request)
{
    char *cursor = request->head;
    char *line = next_line(&cursor);
    if (line == NULL || !parse_request_line(line, request)) {
        return reject(request, 400, "malformed request line");
    }
    while ((line = next_line(&cursor)) != NULL && *line != '\0') {
        const char *problem = parse_header_line(line, request);
        if (problem != NULL) {
            return reject(request, 400, problem);
        }
    }
    return HTTP_REQUEST_COMPLETE;
}

// Only a POST with a plain Content-Length body within the limit is read any further.
static enum http_read_outcome check_framing(struct http_request *request)
{
    if (strcmp(request->method, "POST") != 0) {
        return reject(request, 405, "method not allowed");
    }
    if (request->has_transfer_encoding) {
        return request->has_content_length
                   ? reject(request, 400, "both Transfer-Encoding and Content-Length")
                   : reject(request, 411, "Transfer-Encoding is not supported");
    }
    if (!request->has_content_length) {
        return reject(request, 411, "Content-Length required");
    }
    if (request->content_length > HTTP_BODY_CAPACITY) {
        return reject(request, 413, "body larger than 64 KiB");
    }
    if (request->has_other_expectation) {
        return reject(request, 417, "unsupported expectation");
    }
    return HTTP_REQUEST_COMPLETE;
}

static enum http_read_outcome read_body(struct channel *channel, struct http_request *request,
                                        const struct timespec *deadline)
{
    if (request->body_length > request->content_length) {
        request->body_length = request->content_length; // pipelined extras are ignored
    }
    if (request->expects_continue && request->body_length < request->content_length) {
        static const char interim[] = "HTTP/1.1 100 Continue\r\n\r\n";
        struct timespec write_deadline = io_deadline_after(WRITE_TIMEOUT_MILLISECONDS);
        enum io_result sent =
            channel_send_all(channel, interim, sizeof interim - 1, &write_deadline);
        if (sent != IO_DONE) {
            return abandon(request, sent);
        }
    }
    while (request->body_length < request->content_length) {
        size_t received = 0;
        enum io_result result =
            channel_receive(channel, request->body + request->body_length,
                       request->content_length - request->body_length, deadline, &received);
        if (result != IO_DONE) {
            return abandon(request, result);
        }
        request->body_length += received;
    }
    return HTTP_REQUEST_COMPLETE;
}

enum http_read_outcome http_read_request(struct channel *channel, struct http_request *request,
                                         const struct timespec *read_deadline)
{
    // Only the scalar fields: clearing the 80 KiB of buffers for every request would be waste.
    request->head_received = 0;
    request->head_length = 0;
    request->method[0] = '\0';
    request->has_content_length = false;
    request->content_length = 0;
    request->has_transfer_encoding = false;
    request->expects_continue = false;
    request->has_other_expectation = false;
    request->body_length = 0;
    request->rejection_status = 0;
    request->problem = NULL;

    enum http_read_outcome outcome = read_head(channel, request, read_deadline);
    if (outcome == HTTP_REQUEST_COMPLETE) {
        outcome = parse_head(request);
    }
    if (outcome == HTTP_REQUEST_COMPLETE) {
        outcome = check_framing(request);
    }
    if (outcome == HTTP_REQUEST_COMPLETE) {
        outcome = read_body(channel, request, read_deadline);
    }
    return outcome;
}

const char *http_reason_phrase(int status)
{
    static const struct {
        int status;
        const char *phrase;
    } phrases[] = {
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {304, "Not Modified"},
        {307, "Temporary Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {411, "Length Required"},
        {413, "Content Too Large"},
        {417, "Expectation Failed"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
    };
    for (size_t index = 0; index < sizeof phrases / sizeof phrases[0]; index++) {
        if (phrases[index].status == status) {
            return phrases[index].phrase;
        }
    }
    return "Unknown";
}

bool http_send(struct channel *channel, const struct http_response *response)
{
    const char *body = response->body;
    size_t body_length = response->body_length;
    // These statuses cannot carry content (RFC 9110, sections 15.3.5 and 15.4.5).
    if (response->status == 204 || response->status == 304) {
        body_length = 0;
    }
    size_t announced = body_length > 0 ? response->announced_length : 0;
    // One buffer, one send when it fits: a separate small send for the body could sit behind
    // Nagle's algorithm waiting for a delayed acknowledgement.
    char message[4096];
    int written = snprintf(message, sizeof message,
                           "HTTP/1.1 %d %s\r\n"
                           "Content-Type: text/plain\r\n"
                           "Content-Length: %zu\r\n"
                           "Connection: close\r\n"
                           "%s\r\n",
                           response->status, http_reason_phrase(response->status), announced,
                           response->extra_headers);
    if (written < 0 || (size_t)written >= sizeof message) {
        return false;
    }
    size_t head_length = (size_t)written;
    size_t inline_length = body_length <= sizeof message - head_length ? body_length : 0;
    if (inline_length > 0) {
        memcpy(message + head_length, body, inline_length);
    }
    struct timespec write_deadline = io_deadline_after(WRITE_TIMEOUT_MILLISECONDS);
    if (channel_send_all(channel, message, head_length + inline_length, &write_deadline) !=
        IO_DONE) {
        return false;
    }
    if (inline_length == body_length) {
        return true;
    }
    return channel_send_all(channel, body, body_length, &write_deadline) == IO_DONE;
}

bool http_send_response(struct channel *channel, int status, const char *extra_headers,
                        const char *body)
{
    size_t length = strlen(body);
    struct http_response response = {.status = status, .extra_headers = extra_headers,
                                     .body = body, .body_length = length,
                                     .announced_length = length};
    return http_send(channel, &response);
}
