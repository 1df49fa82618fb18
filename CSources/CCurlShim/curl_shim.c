/*
 * curl_shim.c - fixed-signature wrappers over libcurl's variadic calls (see the header).
 */

#include "ota_curl_shim.h"

CURLcode
ota_curl_set_long(CURL *handle, CURLoption option, long value)
{
    return curl_easy_setopt(handle, option, value);
}

CURLcode
ota_curl_set_string(CURL *handle, CURLoption option, const char *value)
{
    return curl_easy_setopt(handle, option, value);
}

CURLcode
ota_curl_set_pointer(CURL *handle, CURLoption option, void *value)
{
    return curl_easy_setopt(handle, option, value);
}

CURLcode
ota_curl_set_data_function(CURL *handle, CURLoption option, ota_curl_data_fn function)
{
    return curl_easy_setopt(handle, option, function);
}

CURLcode
ota_curl_get_long(CURL *handle, CURLINFO info, long *value)
{
    return curl_easy_getinfo(handle, info, value);
}

CURLcode
ota_curl_get_double(CURL *handle, CURLINFO info, double *value)
{
    return curl_easy_getinfo(handle, info, value);
}

CURLcode
ota_curl_set_progress_function(CURL *handle, ota_curl_progress_fn function)
{
    return curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, function);
}

CURLcode
ota_curl_get_offset(CURL *handle, CURLINFO info, curl_off_t *value)
{
    return curl_easy_getinfo(handle, info, value);
}
