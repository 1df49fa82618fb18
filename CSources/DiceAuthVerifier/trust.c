// Trusted roots and certificate verification on OpenSSL 3 libcrypto.
#include "trust.h"

#include <dirent.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static bool has_suffix(const char *name, const char *suffix)
{
    size_t name_length = strlen(name);
    size_t suffix_length = strlen(suffix);
    return name_length > suffix_length &&
           strcmp(name + name_length - suffix_length, suffix) == 0;
}

static bool add_to_store(X509_STORE *store, X509 *certificate)
{
    bool added = X509_STORE_add_cert(store, certificate) == 1;
    X509_free(certificate);
    return added;
}

// Adds every certificate of the file to the store: all PEM certificates, or else the file as
// one DER certificate. Returns how many, or -1 when the store refused one.
static int add_certificates_from_file(X509_STORE *store, BIO *file)
{
    int added = 0;
    X509 *certificate = NULL;
    while ((certificate = PEM_read_bio_X509(file, NULL, NULL, NULL)) != NULL) {
        if (!add_to_store(store, certificate)) {
            return -1;
        }
        added++;
    }
    if (added == 0 && BIO_reset(file) == 0) {
        certificate = d2i_X509_bio(file, NULL);
        if (certificate != NULL) {
            added = add_to_store(store, certificate) ? 1 : -1;
        }
    }
    // The read that found no further certificate always leaves an error behind.
    ERR_clear_error();
    return added;
}

// Loads one directory entry if it is a regular *.crt or *.pem file. Returns the number of
// certificates added (0 for entries that are not root files), or -1 after reporting a problem.
static int load_root_entry(X509_STORE *store, const char *directory, const char *name)
{
    if (!has_suffix(name, ".crt") && !has_suffix(name, ".pem")) {
        return 0;
    }
    char path[PATH_MAX];
    int written = snprintf(path, sizeof path, "%s/%s", directory, name);
    struct stat status;
    if (written < 0 || (size_t)written >= sizeof path || stat(path, &status) != 0) {
        fprintf(stderr, "dice-auth-verifier: cannot use root file %s/%s\n", directory, name);
        return -1;
    }
    if (!S_ISREG(status.st_mode)) {
        return 0;
    }
    BIO *file = BIO_new_file(path, "rb");
    int added = file != NULL ? add_certificates_from_file(store, file) : -1;
    BIO_free(file);
    ERR_clear_error();
    if (added <= 0) {
        fprintf(stderr, "dice-auth-verifier: no usable certificate in %s\n", path);
        return -1;
    }
    return added;
}

X509_STORE *trust_load_roots(const char *directory)
{
    DIR *listing = opendir(directory);
    if (listing == NULL) {
        fprintf(stderr, "dice-auth-verifier: cannot open roots directory %s\n", directory);
        return NULL;
    }
    X509_STORE *store = X509_STORE_new();
    if (store == NULL) {
        fputs("dice-auth-verifier: out of memory\n", stderr);
        closedir(listing);
        return NULL;
    }
    int total = 0;
    int added = 0;
    const struct dirent *entry = NULL;
    while (added >= 0 && (entry = readdir(listing)) != NULL) {
        added = load_root_entry(store, directory, entry->d_name);
        total += added > 0 ? added : 0;
    }
    closedir(listing);
    if (added >= 0 && total == 0) {
        fprintf(stderr, "dice-auth-verifier: no *.crt or *.pem root in %s\n", directory);
    }
    if (added < 0 || total == 0) {
        X509_STORE_free(store);
        return NULL;
    }
    fprintf(stderr, "roots: %d certificate(s) from %s\n", total, directory);
    return store;
}

X509 *trust_parse_pem_certificate(const unsigned char *data, size_t length)
{
    BIO *memory = BIO_new_mem_buf(data, (int)length);
    X509 *certificate = memory != NULL ? PEM_read_bio_X509(memory, NULL, NULL, NULL) : NULL;
    BIO_free(memory);
    ERR_clear_error();
    return certificate;
}

void trust_describe_subject(X509 *certificate, char *text, size_t capacity)
{
    text[0] = '\0';
    BIO *memory = BIO_new(BIO_s_mem());
    if (memory == NULL) {
        return;
    }
    // RFC 2253 escaping keeps the text printable ASCII and escapes '"' and '\', so it can sit
    // between quotes in a log line; the order stays as in the certificate.
    unsigned long flags = ASN1_STRFLGS_RFC2253 | XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_FN_SN |
                          XN_FLAG_DUMP_UNKNOWN_FIELDS;
    char *printed = NULL;
    if (X509_NAME_print_ex(memory, X509_get_subject_name(certificate), 0, flags) >= 0) {
        long printed_length = BIO_get_mem_data(memory, &printed);
        size_t copied = printed_length > 0 ? (size_t)printed_length : 0;
        bool truncated = copied >= capacity;
        copied = truncated ? capacity - 1 : copied;
        memcpy(text, printed, copied);
        text[copied] = '\0';
        // A cut may leave a lone backslash at the end, which would escape the closing quote.
        size_t backslashes = 0;
        while (truncated && backslashes < copied && text[copied - 1 - backslashes] == '\\') {
            backslashes++;
        }
        if (backslashes % 2 == 1) {
            text[copied - 1] = '\0';
        }
    }
    BIO_free(memory);
    ERR_clear_error();
}

// DICE certificates are CA certificates with keyUsage keyCertSign only, so a check of the
// certificate's own purpose or key usage would refuse every genuine one. Only those two
// findings, and only about the certificate itself (depth 0), are forgiven.
static int tolerate_dice_key_usage(int preverified, X509_STORE_CTX *context)
{
    if (preverified) {
        return 1;
    }
    int error = X509_STORE_CTX_get_error(context);
    bool about_the_certificate_itself = X509_STORE_CTX_get_error_depth(context) == 0;
    bool about_usage = error == X509_V_ERR_INVALID_PURPOSE ||
                       error == X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE;
    return about_the_certificate_itself && about_usage ? 1 : 0;
}

bool trust_verify(X509_STORE *store, X509 *certificate, char *reason, size_t capacity)
{
    X509_STORE_CTX *context = X509_STORE_CTX_new();
    if (context == NULL || X509_STORE_CTX_init(context, store, certificate, NULL) != 1) {
        X509_STORE_CTX_free(context);
        ERR_clear_error();
        snprintf(reason, capacity, "cannot set up the verification");
        return false;
    }
    // The DICE inputs sit in a critical extension (1.3.6.1.4.1.11129.2.1.24) that OpenSSL
    // does not know; without this flag every genuine DICE certificate would fail.
    X509_STORE_CTX_set_flags(context, X509_V_FLAG_IGNORE_CRITICAL);
    X509_STORE_CTX_set_verify_cb(context, tolerate_dice_key_usage);
    bool verified = X509_verify_cert(context) == 1;
    int error = X509_STORE_CTX_get_error(context);
    if (verified) {
        snprintf(reason, capacity, "verified");
    } else if (error == X509_V_OK) {
        snprintf(reason, capacity, "internal verification error");
    } else {
        snprintf(reason, capacity, "%s", X509_verify_cert_error_string(error));
    }
    X509_STORE_CTX_free(context);
    ERR_clear_error();
    return verified;
}
