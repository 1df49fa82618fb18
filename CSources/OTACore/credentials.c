/*
 * credentials.c - the server configuration, certificate inspection and hashing, each a thin
 * layer over the backend so that callers never see which library does the work.
 */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ota_internal.h"
#include "tls_backend.h"

/* Every suite's OpenSSL name, ':' between them, with room to spare. */
#define OTA_POLICY_TEXT_SIZE 512

struct ota_server_config {
    struct ota_tls_credentials *credentials;
    ota_cert_info certificate;
    int min_version;
    char ciphers[OTA_POLICY_TEXT_SIZE]; /* the suites in effect, OpenSSL names */
};

struct ota_sha256_ctx {
    struct ota_tls_sha256 *backend;
};

/*
 * Reports a file that cannot be read with errno text, before either TLS library gets to give
 * its vaguer message.
 */
static int
ota_check_readable(const char *path, char *detail, size_t detail_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        ota_detail_set(detail, detail_size, "cannot read %s: %s", path, strerror(errno));
        return OTA_ERR_IO;
    }

    struct stat info;
    int is_regular = fstat(fd, &info) == 0 && S_ISREG(info.st_mode);
    close(fd);
    if (!is_regular) {
        ota_detail_set(detail, detail_size, "cannot read %s: not a regular file", path);
        return OTA_ERR_IO;
    }
    return OTA_OK;
}

/* The label that starts a failure's detail, naming the input at fault (see ota_core.h). */
static const char *
ota_item_label(int item)
{
    switch (item) {
    case OTA_TLS_ITEM_CERTIFICATE: return "certificate";
    case OTA_TLS_ITEM_KEY: return "private key";
    case OTA_TLS_ITEM_PAIR: return "certificate and key";
    default: return "credentials";
    }
}

/* Checks both files, then has the backend load them; `*item` names what failed. */
static int
ota_load_credentials(const char *certificate_path, const char *key_path,
                     const struct ota_tls_policy *policy,
                     struct ota_tls_credentials **credentials, int *item, char *cause,
                     size_t cause_size)
{
    *item = OTA_TLS_ITEM_CERTIFICATE;
    int status = ota_check_readable(certificate_path, cause, cause_size);
    if (status != OTA_OK) {
        return status;
    }
    *item = OTA_TLS_ITEM_KEY;
    status = ota_check_readable(key_path, cause, cause_size);
    if (status != OTA_OK) {
        return status;
    }
    return ota_tls_credentials_load(certificate_path, key_path, policy, credentials, item,
                                    cause, cause_size);
}

/* ---- TLS policy ------------------------------------------------------------------------ */

/* Suite names compare without regard to case, and '-' equals '_' (mbedTLS's dashed names). */
static int
ota_policy_name_equal(const char *given, size_t length, const char *name)
{
    if (strlen(name) != length) {
        return 0;
    }
    for (size_t index = 0; index < length; index++) {
        char left = given[index] == '-' ? '_' : given[index];
        char right = name[index] == '-' ? '_' : name[index];
        if (tolower((unsigned char)left) != tolower((unsigned char)right)) {
            return 0;
        }
    }
    return 1;
}

static const struct ota_tls_suite *
ota_policy_find(const char *name, size_t length)
{
    for (size_t index = 0; index < OTA_TLS_POLICY_SUITE_COUNT; index++) {
        const struct ota_tls_suite *suite = &ota_tls_policy_suites[index];
        if (ota_policy_name_equal(name, length, suite->openssl_name) ||
            ota_policy_name_equal(name, length, suite->iana_name)) {
            return suite;
        }
    }
    return NULL;
}

/* Adds a suite the backend and the minimum version let negotiate, once. */
static void
ota_policy_add(struct ota_tls_policy *policy, const struct ota_tls_suite *suite)
{
    if (suite->version < policy->min_version || suite->version > ota_tls_backend_max_version()) {
        return;
    }
    for (size_t index = 0; index < policy->count; index++) {
        if (policy->suites[index] == suite) {
            return;
        }
    }
    policy->suites[policy->count++] = suite;
}

static int
ota_policy_min_version(int min_version, struct ota_tls_policy *policy, char *detail,
                       size_t detail_size)
{
    policy->min_version = min_version == 0 ? OTA_TLS_1_2 : (uint16_t)min_version;
    if (min_version != 0 && min_version != OTA_TLS_1_2 && min_version != OTA_TLS_1_3) {
        ota_detail_set(detail, detail_size, "tls min version: 0x%04x is not TLS 1.2 or 1.3",
                       (unsigned int)min_version);
        return OTA_ERR_USAGE;
    }
    if (policy->min_version > ota_tls_backend_max_version()) {
        /* Debian's mbedTLS 2.28 has no TLS 1.3: "1.3 only" would refuse every client. */
        ota_detail_set(detail, detail_size,
                       "tls min version: TLS 1.3 is not available with the %s backend (%s), "
                       "which speaks TLS 1.2 only", ota_tls_backend_name(),
                       ota_tls_backend_version());
        return OTA_ERR_CONFIG;
    }
    return OTA_OK;
}

/* Reads a list of suite names; each must be one of the policy's (stricter only). */
static int
ota_policy_ciphers(const char *ciphers, struct ota_tls_policy *policy, char *detail,
                   size_t detail_size)
{
    const char *cursor = ciphers;
    while (*cursor != '\0') {
        size_t skip = strspn(cursor, ":, \t");
        cursor += skip;
        size_t length = strcspn(cursor, ":, \t");
        if (length == 0) {
            continue;
        }

        const struct ota_tls_suite *suite = ota_policy_find(cursor, length);
        if (suite == NULL) {
            ota_detail_set(detail, detail_size,
                           "tls ciphers: '%.*s' is not allowed: only ECDHE suites with AES-GCM "
                           "or ChaCha20-Poly1305 may be named (the list can only narrow the "
                           "default)", (int)(length > 60 ? 60 : length), cursor);
            return OTA_ERR_CONFIG;
        }
        ota_policy_add(policy, suite);
        cursor += length;
    }
    return OTA_OK;
}

/* Whether a TLS 1.2 client (every field device) finds a suite. */
static int
ota_policy_has_tls12(const struct ota_tls_policy *policy)
{
    for (size_t index = 0; index < policy->count; index++) {
        if (policy->suites[index]->version == OTA_TLS_1_2) {
            return 1;
        }
    }
    return 0;
}

/*
 * A TLS 1.2 suite names the key kind it signs with; a list whose TLS 1.2 suites all need the
 * other kind would fail every field device's handshake, so it is refused at start instead.
 */
static int
ota_policy_check_key(const struct ota_tls_policy *policy, int key_kind, char *detail,
                     size_t detail_size)
{
    if (policy->min_version != OTA_TLS_POLICY_VERSION_1_2 || key_kind == OTA_KEY_OTHER) {
        return OTA_OK;
    }
    const char *needed = key_kind == OTA_KEY_RSA ? "-RSA-" : "-ECDSA-";
    for (size_t index = 0; index < policy->count; index++) {
        const struct ota_tls_suite *suite = policy->suites[index];
        if (suite->version == OTA_TLS_POLICY_VERSION_1_2 &&
            strstr(suite->openssl_name, needed) != NULL) {
            return OTA_OK;
        }
    }
    ota_detail_set(detail, detail_size,
                   "tls ciphers: no TLS 1.2 suite in the list works with the certificate's %s "
                   "key (TLS 1.2 devices could not connect); add an ECDHE%s suite",
                   key_kind == OTA_KEY_RSA ? "RSA" : "EC", needed);
    return OTA_ERR_CONFIG;
}

static int
ota_policy_parse(const char *ciphers, int min_version, struct ota_tls_policy *policy,
                 char *detail, size_t detail_size)
{
    memset(policy, 0, sizeof(*policy));
    int status = ota_policy_min_version(min_version, policy, detail, detail_size);
    if (status != OTA_OK) {
        return status;
    }
    if (ciphers == NULL || ciphers[0] == '\0') {
        for (size_t index = 0; index < OTA_TLS_POLICY_SUITE_COUNT; index++) {
            ota_policy_add(policy, &ota_tls_policy_suites[index]);
        }
        return OTA_OK;
    }

    status = ota_policy_ciphers(ciphers, policy, detail, detail_size);
    if (status != OTA_OK) {
        return status;
    }
    if (policy->count == 0) {
        ota_detail_set(detail, detail_size,
                       "tls ciphers: names no suite that TLS %s on the %s backend can use",
                       policy->min_version == OTA_TLS_1_3 ? "1.3" : "1.2 or 1.3",
                       ota_tls_backend_name());
        return OTA_ERR_CONFIG;
    }
    if (policy->min_version == OTA_TLS_1_2 && !ota_policy_has_tls12(policy)) {
        ota_detail_set(detail, detail_size,
                       "tls ciphers: names no TLS 1.2 suite, so TLS 1.2 clients (every field "
                       "device) could not connect; name one, or set the minimum version to 1.3");
        return OTA_ERR_CONFIG;
    }
    return OTA_OK;
}

static void
ota_policy_text(const struct ota_tls_policy *policy, char *text, size_t text_size)
{
    size_t used = 0;
    text[0] = '\0';
    for (size_t index = 0; index < policy->count && used < text_size; index++) {
        int wrote = snprintf(text + used, text_size - used, "%s%s", index > 0 ? ":" : "",
                             policy->suites[index]->openssl_name);
        if (wrote < 0) {
            break;
        }
        used += (size_t)wrote;
    }
}

/* ---- server configuration -------------------------------------------------------------- */

int
ota_key_pair_check(const char *certificate_path, const char *key_path, int *matches,
                   char *detail, size_t detail_size)
{
    if (certificate_path == NULL || key_path == NULL || matches == NULL) {
        ota_detail_set(detail, detail_size, "certificate and key paths are required");
        return OTA_ERR_USAGE;
    }
    *matches = 0;

    /* The built-in policy: any key the backend can serve with is read the same way here. */
    struct ota_tls_policy policy;
    int status = ota_policy_parse(NULL, 0, &policy, detail, detail_size);
    if (status != OTA_OK) {
        return status;
    }
    struct ota_tls_credentials *credentials = NULL;
    int item = OTA_TLS_ITEM_OTHER;
    char cause[OTA_DETAIL_SIZE] = "";
    status = ota_load_credentials(certificate_path, key_path, &policy, &credentials, &item, cause,
                                  sizeof(cause));
    if (status == OTA_OK) {
        ota_tls_credentials_free(credentials);
        *matches = 1;
        return OTA_OK;
    }
    ota_detail_set(detail, detail_size, "%s", cause);
    /* Both were read and compared: the answer is "no", not a failure to answer. */
    return item == OTA_TLS_ITEM_PAIR ? OTA_OK : status;
}

ota_server_config *
ota_server_config_new(const char *certificate_path, const char *key_path, int *status,
                      char *detail, size_t detail_size)
{
    return ota_server_config_new_with_policy(certificate_path, key_path, NULL, 0, status,
                                             detail, detail_size);
}

ota_server_config *
ota_server_config_new_with_policy(const char *certificate_path, const char *key_path,
                                  const char *ciphers, int min_version, int *status,
                                  char *detail, size_t detail_size)
{
    int ignored_status;
    status = status != NULL ? status : &ignored_status;
    if (certificate_path == NULL || key_path == NULL) {
        *status = OTA_ERR_USAGE;
        ota_detail_set(detail, detail_size, "certificate and key paths are required");
        return NULL;
    }

    /* The policy first: it costs nothing and its mistakes are the easiest to fix. */
    struct ota_tls_policy policy;
    *status = ota_policy_parse(ciphers, min_version, &policy, detail, detail_size);
    if (*status != OTA_OK) {
        return NULL;
    }

    ota_server_config *config = calloc(1, sizeof(*config));
    if (config == NULL) {
        *status = OTA_ERR_MEMORY;
        ota_detail_set(detail, detail_size, "out of memory");
        return NULL;
    }

    config->min_version = policy.min_version;
    ota_policy_text(&policy, config->ciphers, sizeof(config->ciphers));

    int item = OTA_TLS_ITEM_OTHER;
    char cause[OTA_DETAIL_SIZE] = "";
    *status = ota_load_credentials(certificate_path, key_path, &policy, &config->credentials,
                                   &item, cause, sizeof(cause));
    if (*status != OTA_OK) {
        ota_detail_set(detail, detail_size, "%s: %s", ota_item_label(item), cause);
        free(config);
        return NULL;
    }

    size_t der_length = 0;
    const uint8_t *der = ota_tls_credentials_der(config->credentials, &der_length);
    *status = ota_tls_cert_inspect(der, der_length, &config->certificate, detail, detail_size);
    if (*status == OTA_OK) {
        *status = ota_policy_check_key(&policy, ota_cert_key_kind(der, der_length), detail,
                                       detail_size);
    }
    if (*status != OTA_OK) {
        ota_server_config_free(config);
        return NULL;
    }
    return config;
}

int
ota_server_config_certificate(const ota_server_config *config, ota_cert_info *info)
{
    if (config == NULL || info == NULL) {
        return OTA_ERR_USAGE;
    }
    *info = config->certificate;
    return OTA_OK;
}

const char *
ota_server_config_ciphers(const ota_server_config *config)
{
    return config != NULL ? config->ciphers : "";
}

int
ota_server_config_min_version(const ota_server_config *config)
{
    return config != NULL ? config->min_version : 0;
}

const struct ota_tls_credentials *
ota_server_config_credentials(const ota_server_config *config)
{
    return config->credentials;
}

void
ota_server_config_free(ota_server_config *config)
{
    if (config == NULL) {
        return;
    }
    ota_tls_credentials_free(config->credentials);
    free(config);
}

int
ota_cert_inspect(const uint8_t *der, size_t length, ota_cert_info *info, char *detail,
                 size_t detail_size)
{
    if (der == NULL || length == 0 || info == NULL) {
        ota_detail_set(detail, detail_size, "no certificate bytes");
        return OTA_ERR_USAGE;
    }
    memset(info, 0, sizeof(*info));
    return ota_tls_cert_inspect(der, length, info, detail, detail_size);
}

int
ota_sha256(const void *data, size_t length, uint8_t digest[32])
{
    ota_sha256_ctx *context = ota_sha256_new();
    if (context == NULL) {
        return OTA_ERR_MEMORY;
    }

    int status = ota_sha256_update(context, data, length);
    if (status == OTA_OK) {
        status = ota_sha256_final(context, digest);
    }
    ota_sha256_free(context);
    return status;
}

ota_sha256_ctx *
ota_sha256_new(void)
{
    ota_sha256_ctx *context = calloc(1, sizeof(*context));
    if (context == NULL) {
        return NULL;
    }

    context->backend = ota_tls_sha256_new();
    if (context->backend == NULL) {
        free(context);
        return NULL;
    }
    return context;
}

int
ota_sha256_update(ota_sha256_ctx *context, const void *data, size_t length)
{
    if (context == NULL || (data == NULL && length > 0)) {
        return OTA_ERR_USAGE;
    }
    return ota_tls_sha256_update(context->backend, data, length);
}

int
ota_sha256_final(ota_sha256_ctx *context, uint8_t digest[32])
{
    if (context == NULL || digest == NULL) {
        return OTA_ERR_USAGE;
    }
    return ota_tls_sha256_final(context->backend, digest);
}

void
ota_sha256_free(ota_sha256_ctx *context)
{
    if (context == NULL) {
        return;
    }
    ota_tls_sha256_free(context->backend);
    free(context);
}
