/*
 * libcurl.h -- libcurl, opened when a client command runs and only then.
 *
 * Why: linked into the binary, libcurl brings 34 shared libraries (TLS,
 * Kerberos, LDAP, SSH...) that the dynamic loader maps and relocates at
 * every start of the agent, which never uses them: ~22 ms of CPU per start
 * on this VM, a quarter of the cold-start target.  The client commands
 * open it with dlopen() instead; the agent never maps it.
 */
#ifndef SCOUT_LIBCURL_H
#define SCOUT_LIBCURL_H

#include <curl/curl.h>

#include "scout.h"

typedef struct {
    CURLcode (*global_init)(long flags);
    void (*global_cleanup)(void);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *curl, CURLoption option, ...);
    CURLcode (*easy_perform)(CURL *curl);
    CURLcode (*easy_getinfo)(CURL *curl, CURLINFO info, ...);
    void (*easy_cleanup)(CURL *curl);
    const char *(*easy_strerror)(CURLcode rc);
    char *(*easy_escape)(CURL *curl, const char *s, int len);
    char *(*escape)(const char *s, int len);
    void (*free)(void *p);
    CURLHcode (*easy_header)(CURL *curl, const char *name, size_t index,
                             unsigned int origin, int request,
                             struct curl_header **hout);
    curl_version_info_data *(*version_info)(CURLversion v);
} scout_libcurl_t;

/* The library's functions (opened once, never closed), or NULL with err
 * saying what is missing. */
const scout_libcurl_t *scout_libcurl_open(char *err);

#endif
