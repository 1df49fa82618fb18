// Trusted roots and the verification of DICE certificates against them (libcrypto only).
#ifndef DICE_AUTH_VERIFIER_TRUST_H
#define DICE_AUTH_VERIFIER_TRUST_H

#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

// Loads every certificate of every *.crt and *.pem file (PEM or DER) in directory. Returns NULL
// after reporting on stderr when a file cannot be used or no certificate was found at all.
X509_STORE *trust_load_roots(const char *directory);

// The first PEM certificate in data, or NULL when there is none.
X509 *trust_parse_pem_certificate(const unsigned char *data, size_t length);

// The subject as "CN=..., O=...", with quotes, backslashes and non-ASCII bytes escaped.
void trust_describe_subject(X509 *certificate, char *text, size_t capacity);

// True when certificate chains to a trusted root. Unknown critical extensions and the key usage
// of the certificate itself are tolerated, as DICE certificates need; nothing else is. On
// failure reason receives OpenSSL's description of the verification error.
bool trust_verify(X509_STORE *store, X509 *certificate, char *reason, size_t capacity);

#endif
