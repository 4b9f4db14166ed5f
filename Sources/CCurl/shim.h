// libcurl: HTTP(S) for the OpenStack APIs.
#include <curl/curl.h>

// curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call; these typed
// wrappers can. One per argument type libcurl expects, so no value is ever passed as the wrong
// C type (a curl_off_t where a long is read, a function pointer cast to a data pointer).
static inline CURLcode lifeboat_curl_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode lifeboat_curl_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode lifeboat_curl_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode lifeboat_curl_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode lifeboat_curl_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode lifeboat_curl_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode lifeboat_curl_getinfo_off(CURL *h, CURLINFO i, curl_off_t *v) { return curl_easy_getinfo(h, i, v); }

// Callbacks: libcurl stores them as untyped varargs, so each has its own typed setter.
static inline CURLcode lifeboat_curl_set_write_function(CURL *h, curl_write_callback f) { return curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, f); }
static inline CURLcode lifeboat_curl_set_header_function(CURL *h, curl_write_callback f) { return curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, f); }
static inline CURLcode lifeboat_curl_set_read_function(CURL *h, curl_read_callback f) { return curl_easy_setopt(h, CURLOPT_READFUNCTION, f); }
static inline CURLcode lifeboat_curl_set_seek_function(CURL *h, curl_seek_callback f) { return curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, f); }

// Macros Swift does not import (they are not plain constants).
static const size_t LIFEBOAT_CURL_READFUNC_ABORT = CURL_READFUNC_ABORT;
static const int LIFEBOAT_CURL_SEEKFUNC_OK = CURL_SEEKFUNC_OK;
static const int LIFEBOAT_CURL_SEEKFUNC_CANTSEEK = CURL_SEEKFUNC_CANTSEEK;
