// The little HTTP/1.1 the verifier speaks: one request per connection, then close.
#ifndef DICE_AUTH_VERIFIER_HTTP_H
#define DICE_AUTH_VERIFIER_HTTP_H

#include "channel.h"

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

enum {
    HTTP_HEAD_CAPACITY = 16 * 1024, // request line and headers
    HTTP_BODY_CAPACITY = 64 * 1024,
    HTTP_METHOD_CAPACITY = 32,
};

enum http_read_outcome {
    HTTP_REQUEST_COMPLETE, // a POST with its whole body
    HTTP_REQUEST_REJECTED, // answer with rejection_status; the body was not read
    HTTP_REQUEST_ABANDONED, // the client closed, failed or stayed silent too long
    HTTP_REQUEST_STOPPED,   // SIGINT or SIGTERM
};

struct http_request {
    char head[HTTP_HEAD_CAPACITY + 1]; // +1 for a terminating NUL
    size_t head_received;              // bytes in head, maybe including the start of the body
    size_t head_length;                // up to and including the blank line
    char method[HTTP_METHOD_CAPACITY];
    bool has_content_length;
    size_t content_length;
    bool has_transfer_encoding;
    bool expects_continue;
    bool has_other_expectation;
    unsigned char body[HTTP_BODY_CAPACITY];
    size_t body_length;
    int rejection_status;
    const char *problem; // why the request was rejected or abandoned
};

// Reads one request: head, then for a well-formed POST its body, answering "100 Continue" first
// when the client asked for it. Everything must arrive before read_deadline.
enum http_read_outcome http_read_request(struct channel *channel, struct http_request *request,
                                         const struct timespec *read_deadline);

// An answer: status line, Content-Type text/plain, Content-Length: announced_length,
// Connection: close, extra_headers (each line ending in CRLF; may be empty), blank line, body.
struct http_response {
    int status;
    const char *extra_headers;
    const void *body; // any bytes, NUL included
    size_t body_length;
    size_t announced_length; // above body_length, the answer ends short of what it announced
};

bool http_send(struct channel *channel, const struct http_response *response);

// Sends a complete answer with a text body.
bool http_send_response(struct channel *channel, int status, const char *extra_headers,
                        const char *body);

const char *http_reason_phrase(int status);

#endif
