/*
 * test_http_target.c -- scout_http_split_target (api/http_url.c), the
 * split of an origin-form request target into path and query that replaced
 * http_parser_parse_url on a request's path, against http_parser_parse_url
 * itself: random targets are sent to the packaged parser in a request line
 * (as the server does), and for every one it accepts the two must give the
 * same path and query.  A target the parser refuses never reaches the
 * split (it is a 400 before the message completes).
 */
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/http_url.h"
#include "scout.h"
#include "testing.h"

typedef struct {
    char   url[512];
    size_t len;
    int    done;
} got_t;

static int
on_url(http_parser *p, const char *at, size_t n)
{
    got_t *g = p->data;

    if (g->len + n < sizeof(g->url)) {
        memcpy(g->url + g->len, at, n);
        g->len += n;
    }
    return 0;
}

static int
on_done(http_parser *p)
{
    ((got_t *)p->data)->done = 1;
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url, .on_message_complete = on_done,
};

/* The target the parser hands on_url for "GET target HTTP/1.1", or -1
 * when it refuses the request. */
static int
parsed(const char *target, got_t *g)
{
    char req[600];
    http_parser p;
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n",
                     target);

    memset(g, 0, sizeof(*g));
    http_parser_init(&p, HTTP_REQUEST);
    p.data = g;
    if (http_parser_execute(&p, &settings, req, (size_t)n) != (size_t)n
        || HTTP_PARSER_ERRNO(&p) != HPE_OK || !g->done)
        return -1;
    return 0;
}

static void
test_split_as_http_parser(void)
{
    static const char *parts[] = {
        "/", "?", "#", "a", "v1", "services", "index=", "12", "&", "wait=",
        "10s", "%20", "%", "+", "=", "@", ":", ";", ",", "!", "$", "'",
        "(", "*", "~", ".", "..", "-", "_", "\xc3\xbc", "\x7f", "[", "]",
        "{", "|", "\\", "^", "`", "\"", "<", ">", "\t", "\x01", "\x80",
    };
    unsigned seed = 14;
    int accepted = 0, with_query = 0, with_fragment = 0, differ = 0;
    int declined = 0;

    for (int i = 0; i < 200000; i++) {
        char target[256];
        size_t len = 0, plen, qoff, qlen;
        int n = 1 + rand_r(&seed) % 12;
        struct http_parser_url u;
        got_t g;
        size_t wp = 0, wq = 0, wqoff = 0;

        if (i % 7 == 0) {                  /* absolute-form */
            memcpy(target, "http://h.example:80", 19);
            len = 19;
        }
        target[len++] = i % 50 == 1 ? '*' : '/';
        for (int k = 0; k < n; k++) {
            const char *p = parts[rand_r(&seed)
                                  % (sizeof(parts) / sizeof(*parts))];
            size_t pl = strlen(p);

            memcpy(target + len, p, pl);
            len += pl;
        }
        target[len] = '\0';
        if (parsed(target, &g) != 0)
            continue;
        accepted++;
        /* one it declines, the server hands to http_parser_parse_url */
        if (scout_http_split_target(g.url, g.len, &plen, &qoff, &qlen)
            != SCOUT_OK) {
            declined++;
            continue;
        }
        /* origin-form: the request line's parser walked every byte through
         * the URL parser's own states, so it cannot refuse it */
        http_parser_url_init(&u);
        if (http_parser_parse_url(g.url, g.len, 0, &u) != 0) {
            if (differ++ < 3)
                fprintf(stderr, "%s: accepted in a request line, refused "
                        "by http_parser_parse_url\n", target);
            continue;
        }
        if (u.field_set & (1 << UF_PATH))
            wp = u.field_data[UF_PATH].len;
        if (u.field_set & (1 << UF_QUERY)) {
            wq = u.field_data[UF_QUERY].len;
            wqoff = u.field_data[UF_QUERY].off;
        }
        with_query += wq > 0;
        with_fragment += (u.field_set & (1 << UF_FRAGMENT)) != 0;
        if (plen != wp || qlen != wq
            || memcmp(g.url, g.url + (wp ? u.field_data[UF_PATH].off : 0),
                      wp) != 0
            || memcmp(g.url + qoff, g.url + wqoff, wq) != 0) {
            if (differ++ < 3)
                fprintf(stderr, "%s: split path %zu query %zu@%zu, "
                        "http_parser %zu, %zu@%zu\n", target, plen, qlen,
                        qoff, wp, wq, wqoff);
        }
    }
    CHECK(differ == 0, "%d of %d accepted targets split otherwise",
          differ, accepted);
    CHECK(accepted > 20000 && with_query > 5000 && with_fragment > 5000
          && declined > 5000 && declined < accepted / 4,
          "%d accepted, %d with a query, %d with a fragment, %d declined",
          accepted, with_query, with_fragment, declined);
}

int
main(void)
{
    RUN(test_split_as_http_parser());
    return test_summary();
}
