/*
 * credentials.c - the server configuration, certificate inspection and hashing, each a thin
 * layer over the backend so that callers never see which library does the work.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ota_internal.h"
#include "tls_backend.h"

struct ota_server_config {
    struct ota_tls_credentials *credentials;
    ota_cert_info certificate;
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
    return ota_tls_credentials_load(certificate_path, key_path, credentials, item, cause,
                                    cause_size);
}

ota_server_config *
ota_server_config_new(const char *certificate_path, const char *key_path, int *status,
                      char *detail, size_t detail_size)
{
    int ignored_status;
    status = status != NULL ? status : &ignored_status;
    if (certificate_path == NULL || key_path == NULL) {
        *status = OTA_ERR_USAGE;
        ota_detail_set(detail, detail_size, "certificate and key paths are required");
        return NULL;
    }

    ota_server_config *config = calloc(1, sizeof(*config));
    if (config == NULL) {
        *status = OTA_ERR_MEMORY;
        ota_detail_set(detail, detail_size, "out of memory");
        return NULL;
    }

    int item = OTA_TLS_ITEM_OTHER;
    char cause[OTA_DETAIL_SIZE] = "";
    *status = ota_load_credentials(certificate_path, key_path, &config->credentials, &item,
                                   cause, sizeof(cause));
    if (*status != OTA_OK) {
        ota_detail_set(detail, detail_size, "%s: %s", ota_item_label(item), cause);
        free(config);
        return NULL;
    }

    size_t der_length = 0;
    const uint8_t *der = ota_tls_credentials_der(config->credentials, &der_length);
    *status = ota_tls_cert_inspect(der, der_length, &config->certificate, detail, detail_size);
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
