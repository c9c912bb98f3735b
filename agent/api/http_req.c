/*
 * http_req.c - what a handler may ask of a request and add to its answer
 * (see http.h). Read-only views into the request's own buffers; nothing
 * here does I/O or touches the connection.
 */

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "api/http_conn.h"
#include "api/http_url.h"
#include "scout.h"

const char *scout_http_req_method(const scout_http_req_t *r)
{ return r->method; }

const char *scout_http_req_path(const scout_http_req_t *r)
{ return r->path; }

const char *scout_http_req_query(const scout_http_req_t *r)
{ return r->query; }

const char *
scout_http_req_header(const scout_http_req_t *req, const char *name)
{
    const char *p = req->hdr, *end = req->hdr + req->hdr_len, *v;

    for (; p < end; p = v + strlen(v) + 1) {
        v = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0)
            return v;
    }
    return NULL;
}

int
scout_http_query_get(const scout_http_req_t *req, const char *name,
                     char *buf, size_t len)
{
    return scout_http_query_value(req->query, name, buf, len);
}

int
scout_http_add_header(scout_http_req_t *req, const char *name,
                      const char *value)
{
    size_t      nlen = strlen(name), vlen = strlen(value);
    const char *s;
    char       *p;

    if (req->aborted || nlen == 0 || strpbrk(value, "\r\n") != NULL
        || req->rhdr_len + nlen + vlen + 5 > RHDR_MAX)
        return SCOUT_ERROR;
    for (s = name; *s; s++)
        if ((unsigned char) *s <= ' ' || *s == ':' || *s == 127)
            return SCOUT_ERROR;
    /* lengths are known and checked: copied, not formatted (every answer
     * to a blocking query adds two) */
    p = req->rhdr + req->rhdr_len;
    memcpy(p, name, nlen);
    p += nlen;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, value, vlen);
    p += vlen;
    *p++ = '\r';
    *p++ = '\n';
    req->rhdr_len = (size_t) (p - req->rhdr);
    return SCOUT_OK;
}

void
scout_http_req_on_abort(scout_http_req_t *req, scout_http_abort_fn fn,
                        void *data)
{
    req->on_abort = fn;
    req->abort_data = data;
}

void
scout_http_set_handler(scout_http_t *h, scout_http_handler_fn handler,
                       void *ud)
{
    h->handler = handler;
    h->ud = ud;
}

/* "GET /v1/services/x" for the loop's stall report, copied rather than
 * formatted: it is made for every request. */
void scout_http_req_what(const scout_http_req_t *r, char *out, size_t len)
{
    size_t m = strlen(r->method), p = strlen(r->path);

    if (m > len - 2)
        m = len - 2;
    if (p > len - 2 - m)
        p = len - 2 - m;
    memcpy(out, r->method, m);
    out[m] = ' ';
    memcpy(out + m + 1, r->path, p);
    out[m + 1 + p] = '\0';
}
