/*
 * ota_curl_shim.h - the libcurl calls Swift cannot make itself.
 *
 * curl_easy_setopt and curl_easy_getinfo are variadic, and Swift imports no variadic C
 * function, so each argument type gets one fixed-signature wrapper here. Nothing else.
 */

#ifndef OTA_CURL_SHIM_H
#define OTA_CURL_SHIM_H

#include <curl/curl.h>

/* The signature of CURLOPT_WRITEFUNCTION and CURLOPT_HEADERFUNCTION callbacks. */
typedef size_t (*ota_curl_data_fn)(char *data, size_t size, size_t count, void *context);

CURLcode ota_curl_set_long(CURL *handle, CURLoption option, long value);
CURLcode ota_curl_set_string(CURL *handle, CURLoption option, const char *value);
CURLcode ota_curl_set_pointer(CURL *handle, CURLoption option, void *value);
CURLcode ota_curl_set_data_function(CURL *handle, CURLoption option, ota_curl_data_fn function);

/* The signature of CURLOPT_XFERINFOFUNCTION: non-zero aborts the transfer. */
typedef int (*ota_curl_progress_fn)(void *context, curl_off_t download_total,
                                    curl_off_t downloaded, curl_off_t upload_total,
                                    curl_off_t uploaded);
CURLcode ota_curl_set_progress_function(CURL *handle, ota_curl_progress_fn function);

CURLcode ota_curl_get_long(CURL *handle, CURLINFO info, long *value);
CURLcode ota_curl_get_double(CURL *handle, CURLINFO info, double *value);
CURLcode ota_curl_get_offset(CURL *handle, CURLINFO info, curl_off_t *value);

#endif /* OTA_CURL_SHIM_H */
