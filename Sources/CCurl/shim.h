// libcurl: HTTP(S) for the OpenStack APIs.
#include <curl/curl.h>

// curl_easy_setopt is variadic, which Swift cannot call; these typed wrappers can.
static inline CURLcode lifeboat_curl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode lifeboat_curl_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode lifeboat_curl_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode lifeboat_curl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
