/*
 * http_mhd_req.c - what a handler may ask of a request and how it is
 * answered, in the libmicrohttpd prototype (bench/http/http_mhd.c has the
 * why). An answer becomes an MHD_Response at once; it is queued by the
 * access handler, never from here: a deferred one resumes its connection
 * and MHD calls the handler again from the loop.
 */

#include <stdio.h>
#include <string.h>

#include <ev.h>
#include <microhttpd.h>

#include "api/http.h"
#include "api/http_url.h"
#include "http_mhd.h"
#include "log.h"
#include "rcbuf.h"
#include "scout.h"

const char *scout_http_req_method(const scout_http_req_t *r)
{ return r->method; }

const char *scout_http_req_path(const scout_http_req_t *r)
{ return r->path; }

const char *scout_http_req_query(const scout_http_req_t *r)
{ return r->query; }

const char *
scout_http_req_header(const scout_http_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, name);
}

int
scout_http_query_get(const scout_http_req_t *r, const char *name, char *buf,
                     size_t len)
{
    return scout_http_query_value(r->query, name, buf, len);
}

int
scout_http_add_header(scout_http_req_t *r, const char *name,
                      const char *value)
{
    size_t      nlen = strlen(name), vlen = strlen(value);
    const char *s;

    if (r->aborted || nlen == 0 || strpbrk(value, "\r\n") != NULL
        || r->rhdr_len + nlen + vlen + 2 > RHDR_MAX)
        return SCOUT_ERROR;
    for (s = name; *s; s++)
        if ((unsigned char) *s <= ' ' || *s == ':' || *s == 127)
            return SCOUT_ERROR;
    memcpy(r->rhdr + r->rhdr_len, name, nlen + 1);
    memcpy(r->rhdr + r->rhdr_len + nlen + 1, value, vlen + 1);
    r->rhdr_len += nlen + vlen + 2;
    return SCOUT_OK;
}

void
scout_http_req_on_abort(scout_http_req_t *r, scout_http_abort_fn fn,
                        void *data)
{
    r->on_abort = fn;
    r->abort_data = data;
}

static void unref_body(void *cls)
{
    scout_rcbuf_unref(cls);
}

static int
respond(scout_http_req_t *r, int status, const char *ctype, const char *body,
        size_t len, scout_rcbuf_t *shared)
{
    struct MHD_Response *resp;
    size_t               off;

    if (r->aborted || r->resp != NULL || r->queued || status < 200
        || status > 599)
        return SCOUT_ERROR;
    if (shared != NULL) {
        resp = MHD_create_response_from_buffer_with_free_callback_cls(
            len, shared->data, unref_body, scout_rcbuf_ref(shared));
        if (resp == NULL)
            scout_rcbuf_unref(shared);
    } else {
        resp = MHD_create_response_from_buffer(len, (void *) (body ? body
                                               : ""), MHD_RESPMEM_MUST_COPY);
    }
    if (resp == NULL) {
        LOG(ERROR, "out of memory for a %zu byte response", len);
        return SCOUT_ERROR;
    }
    if (ctype != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    for (off = 0; off < r->rhdr_len;) {
        const char *n = r->rhdr + off, *v = n + strlen(n) + 1;

        MHD_add_response_header(resp, n, v);
        off = (size_t) (v + strlen(v) + 1 - r->rhdr);
    }
    if (r->failed)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    LOG(DEBUG, "%s %s%s%s %d %ldus", r->method, r->path,
        *r->query ? "?" : "", r->query, status,
        (long) ((ev_time() - r->t0) * 1e6));
    r->resp = resp;
    r->status = status;
    /* Deferred: carry on from the loop (MHD's run after the resume calls
     * the handler again, which queues it), never from here. */
    if (r->deferred && r->c != NULL)
        scout_http_mhd_resume(r->c);
    return SCOUT_OK;
}

int
scout_http_respond(scout_http_req_t *r, int status, const char *ctype,
                   const char *body, size_t len)
{
    return respond(r, status, ctype, body, len, NULL);
}

int
scout_http_respond_shared(scout_http_req_t *r, int status, const char *ctype,
                          scout_rcbuf_t *body)
{
    return respond(r, status, ctype, body->data, body->len, body);
}
