/*
 * libcurl.c -- libcurl opened at run time by the client commands (see
 * libcurl.h): the agent's start does not pay for its 34 libraries.
 */
#include "client/libcurl.h"

#include <dlfcn.h>
#include <stddef.h>

/* Debian's libcurl4 (any of its TLS flavours) installs this soname. */
#define LIBCURL_SONAME "libcurl.so.4"

static scout_libcurl_t lc;
static int opened;

static int
sym(void *h, void *slot, const char *name, char *err)
{
    void *f = dlsym(h, name);

    if (f == NULL)
        return scout_seterr(err, "%s has no %s (libcurl 7.83 or later is "
                            "needed)", LIBCURL_SONAME, name);
    *(void **)slot = f;
    return SCOUT_OK;
}

const scout_libcurl_t *
scout_libcurl_open(char *err)
{
    void *h;

    if (opened)
        return &lc;
    if ((h = dlopen(LIBCURL_SONAME, RTLD_NOW | RTLD_LOCAL)) == NULL) {
        scout_seterr(err, "the client commands need libcurl: %s",
                     dlerror());
        return NULL;
    }
    if (sym(h, &lc.global_init, "curl_global_init", err) != SCOUT_OK
        || sym(h, &lc.global_cleanup, "curl_global_cleanup", err) != SCOUT_OK
        || sym(h, &lc.easy_init, "curl_easy_init", err) != SCOUT_OK
        || sym(h, &lc.easy_setopt, "curl_easy_setopt", err) != SCOUT_OK
        || sym(h, &lc.easy_perform, "curl_easy_perform", err) != SCOUT_OK
        || sym(h, &lc.easy_getinfo, "curl_easy_getinfo", err) != SCOUT_OK
        || sym(h, &lc.easy_cleanup, "curl_easy_cleanup", err) != SCOUT_OK
        || sym(h, &lc.easy_strerror, "curl_easy_strerror", err) != SCOUT_OK
        || sym(h, &lc.easy_escape, "curl_easy_escape", err) != SCOUT_OK
        || sym(h, &lc.escape, "curl_escape", err) != SCOUT_OK
        || sym(h, &lc.free, "curl_free", err) != SCOUT_OK
        || sym(h, &lc.easy_header, "curl_easy_header", err) != SCOUT_OK
        || sym(h, &lc.version_info, "curl_version_info", err) != SCOUT_OK) {
        dlclose(h);
        return NULL;
    }
    opened = 1;
    return &lc;
}
