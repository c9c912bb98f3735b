/*
 * http_parse.c - http-parser callbacks of scout's HTTP server (see
 * http_conn.h): copy what a request keeps into its fixed buffers, and bail
 * out with a status (414, 431, 413) the moment a limit is passed, so a
 * client can never make us hold more than one request's worth of memory.
 * A message pauses the parser when it ends: one request at a time.
 */

#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include <ev.h>
#include <http_parser.h>

#include "api/http_conn.h"
#include "api/http_url.h"
#include "scout.h"

/* ---- parser callbacks: copy what we keep, bail out with a status --------- */

static int hdr_put(conn_t *c, const char *at, size_t n, int nul)
{
    scout_http_req_t *r = c->req;

    /* The request line shares the header budget: it is part of the head. */
    if (r->url_len + r->hdr_len + n + 2 > SCOUT_HTTP_MAX_HEADER) {
        c->err_status = 431;
        return -1;
    }
    if (nul)
        r->hdr[r->hdr_len++] = '\0';
    memcpy(r->hdr + r->hdr_len, at, n);
    r->hdr_len += n;
    return 0;
}

static int on_message_begin(http_parser *p)
{
    conn_t *c = p->data;

    free(c->req);   /* defensive: a message always ends before the next */
    if ((c->req = c->spare) != NULL)
        c->spare = NULL;
    else if ((c->req = malloc(sizeof(*c->req))) == NULL) {
        c->err_status = 503;
        return -1;
    }
    /* the buffers are written before they are read (lengths say how
     * far): only the fields before them need zeroing */
    memset(c->req, 0, offsetof(scout_http_req_t, url));
    c->req->conn = c;
    c->req->t0 = ev_time();
    /* The whole request is due this long after its first byte: a client
     * dribbling a byte at a time does not get to reset the clock. */
    if (c->req_start == 0) {
        c->req_start = ev_now(c->h->loop);
        scout_http_conn_timer_again(c, scout_http_request_timeout(c->h));
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    conn_t           *c = p->data;
    scout_http_req_t *r = c->req;

    if (r->url_len + n > SCOUT_HTTP_MAX_URL) {
        c->err_status = 414;
        return -1;
    }
    memcpy(r->url + r->url_len, at, n);
    r->url_len += n;
    return 0;
}

/* Field and value may each arrive in pieces across reads; a NUL goes in
 * only when the parser switches from one to the other. */
static int hdr_piece(http_parser *p, const char *at, size_t n, int state)
{
    conn_t *c = p->data;
    int     nul = c->req->hstate != 0 && c->req->hstate != state;

    c->req->hstate = state;
    return hdr_put(c, at, n, nul);
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{ return hdr_piece(p, at, n, 1); }

static int on_header_value(http_parser *p, const char *at, size_t n)
{ return hdr_piece(p, at, n, 2); }

static int on_headers_complete(http_parser *p)
{
    conn_t           *c = p->data;
    scout_http_req_t *r = c->req;

    if (r->hstate != 0 && hdr_put(c, "", 0, 1) != 0)
        return -1;
    r->hstate = 0;
    /* http-parser takes any digits ("HTTP/9.9"); we speak 1.0 and 1.1 and
     * must not answer a version we do not know as if it were one of them */
    if (p->http_major != 1 || p->http_minor > 1) {
        c->err_status = 505;
        return -1;
    }
    r->method = http_method_str((enum http_method) p->method);
    r->head = p->method == HTTP_HEAD;
    r->http10 = p->http_major == 1 && p->http_minor == 0;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    conn_t *c = p->data;

    (void) at;
    c->req->body_len += n;
    if (c->req->body_len > SCOUT_HTTP_MAX_BODY) {
        c->err_status = 413;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    conn_t                *c = p->data;
    scout_http_req_t      *r = c->req;
    struct http_parser_url u;
    size_t                 plen = 0, qlen = 0, qoff = 0;

    /* After an upgrade the stream is no longer HTTP: answer, then close. */
    r->keepalive = http_should_keep_alive(p) && !p->upgrade;
    c->req_start = 0;
    r->url[r->url_len] = '\0';
    if (p->method != HTTP_CONNECT
        && scout_http_split_target(r->url, r->url_len, &plen, &qoff, &qlen)
           == SCOUT_OK) {
        memcpy(r->pq, r->url, plen);
        memcpy(r->pq + plen + 1, r->url + qoff, qlen);
        goto split;
    }
    http_parser_url_init(&u);
    if (http_parser_parse_url(r->url, r->url_len, p->method == HTTP_CONNECT,
                              &u) != 0) {
        r->bad_url = 1;
    } else {
        if (u.field_set & (1 << UF_PATH))
            plen = u.field_data[UF_PATH].len;
        if (u.field_set & (1 << UF_QUERY))
            qlen = u.field_data[UF_QUERY].len;
        memcpy(r->pq, r->url + u.field_data[UF_PATH].off, plen);
        memcpy(r->pq + plen + 1, r->url + u.field_data[UF_QUERY].off, qlen);
    }
split:
    r->pq[plen] = '\0';
    r->pq[plen + 1 + qlen] = '\0';
    r->path = r->pq;
    r->query = r->pq + plen + 1;
    http_parser_pause(p, 1);   /* one at a time; the rest waits in c->in */
    return 0;
}

const http_parser_settings scout_http_parser_settings = {
    .on_message_begin = on_message_begin, .on_url = on_url,
    .on_header_field = on_header_field, .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete, .on_body = on_body,
    .on_message_complete = on_message_complete,
};
