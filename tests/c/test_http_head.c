/*
 * test_http_head.c -- an answer's head (http_head.c) is byte for byte what
 * the one snprintf it replaced wrote: every status the server answers and
 * some it never does, with and without a Content-Type, 204 and 304 without
 * a Content-Length, lengths of every digit count up to SIZE_MAX, the
 * handler's own headers, and each Connection case; a head that does not fit
 * its room is refused, not cut.  (The caller gives 204 and 304 a clen of
 * 0, as out_response always did.)  test_http_wire pins the same bytes on the
 * wire.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "api/http_head.h"
#include "testing.h"

/* The head as out_response wrote it before (http.c at f30b391). */
static int
old_head(char *out, size_t room, const scout_http_head_t *h)
{
    int nobody = h->nobody;

    return snprintf(out, room, "HTTP/1.1 %d %s\r\nDate: %s\r\n"
                    "%s%s%s%s%.*zu%s%.*s%s\r\n", h->status,
                    scout_http_reason(h->status), h->date,
                    h->ctype ? "Content-Type: " : "",
                    h->ctype ? h->ctype : "", h->ctype ? "\r\n" : "",
                    nobody ? "" : "Content-Length: ", nobody ? 0 : 1,
                    h->clen, nobody ? "" : "\r\n", (int) h->extra_len,
                    h->extra, !h->keepalive ? "Connection: close\r\n"
                    : h->http10 ? "Connection: keep-alive\r\n" : "");
}

static void
test_as_snprintf(void)
{
    static const int status[] = {
        200, 201, 204, 302, 304, 400, 403, 404, 405, 409, 413, 414, 429, 431,
        500, 501, 503, 504, 505, 299, 399, 418, 599, 0, 7, 1000, -1,
    };
    static const size_t clen[] = {
        0, 1, 9, 10, 99, 100, 5321, 65536, 4294967295u, 4294967296u,
        SIZE_MAX / 10, SIZE_MAX,
    };
    static const char *ctype[] = {
        NULL, "application/json", "text/plain; charset=utf-8", "",
    };
    static const char *extra[] = {
        "", "X-Scout-Index: 42\r\nX-Scout-State: synced\r\n", "Allow: GET\r\n",
    };
    int n = 0, differ = 0;

    for (size_t s = 0; s < sizeof(status) / sizeof(*status); s++)
        for (size_t l = 0; l < sizeof(clen) / sizeof(*clen); l++)
            for (size_t t = 0; t < sizeof(ctype) / sizeof(*ctype); t++)
                for (size_t x = 0; x < sizeof(extra) / sizeof(*extra); x++)
                    for (int conn = 0; conn < 3; conn++) {
                        scout_http_head_t h = {
                            .status = status[s],
                            .date = "Sun, 06 Dec 2026 22:49:10 GMT",
                            .ctype = ctype[t],
                            .nobody = status[s] == 204 || status[s] == 304,
                            .extra = extra[x],
                            .extra_len = strlen(extra[x]),
                            .keepalive = conn != 0, .http10 = conn == 2,
                        };
                        char want[512], got[512];

                        /* out_response's clen: 0 when there is none (the
                         * old format printed a 0 as nothing) */
                        h.clen = h.nobody ? 0 : clen[l];
                        int wl = old_head(want, sizeof(want), &h);
                        size_t gl = scout_http_head_write(got, sizeof(got),
                                                          &h);

                        n++;
                        if (wl < 0 || gl != (size_t) wl
                            || memcmp(got, want, gl) != 0) {
                            if (differ++ < 3)
                                fprintf(stderr, "got  %.*s\nwant %s\n",
                                        (int) gl, got, want);
                        }
                    }
    CHECK(differ == 0, "%d of %d heads differ", differ, n);
}

/* Too little room: refused (0), never a head cut short. */
static void
test_no_room(void)
{
    scout_http_head_t h = {
        .status = 200, .date = "Sun, 06 Dec 2026 22:49:10 GMT",
        .ctype = "application/json", .clen = 5321,
        .extra = "", .keepalive = 1,
    };
    char buf[256];
    size_t full = scout_http_head_write(buf, sizeof(buf), &h);

    CHECK(full > 0 && memcmp(buf + full - 4, "\r\n\r\n", 4) == 0);
    CHECK(scout_http_head_write(buf, 40, &h) == 0);
    CHECK(scout_http_head_write(buf, 0, &h) == 0);
}

static void
test_put_u64(void)
{
    char buf[32];
    char want[32];
    unsigned long long v[] = { 0, 1, 9, 10, 12345, 18446744073709551615ull };

    for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++) {
        *scout_http_put_u64(buf, v[i]) = '\0';
        snprintf(want, sizeof(want), "%llu", v[i]);
        CHECK(strcmp(buf, want) == 0, "%s, want %s", buf, want);
    }
}

int
main(void)
{
    RUN(test_as_snprintf());
    RUN(test_no_room());
    RUN(test_put_u64());
    return test_summary();
}
