/* libcurl as the system installs it (Debian: libcurl4-openssl-dev). */
#include <curl/curl.h>
