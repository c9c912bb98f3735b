/*
 * http_url.c - percent-decoding and query strings for the HTTP server
 * (http_url.h).  Pure string work, kept apart from http.c, which is about
 * connections: what a request's bytes mean, not how they arrive.
 */
#include "api/http_url.h"

#include <string.h>

#include "api/http.h"
#include "scout.h"

static int
hexval(int ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0'
         : (ch | 0x20) >= 'a' && (ch | 0x20) <= 'f' ? (ch | 0x20) - 'a' + 10
         : -1;
}

/* %00 is refused: callers use the result as a C string, and "a%00b" cut
 * short to "a" would silently change its meaning. */
static int
decode(const char *src, size_t n, char *dst, size_t dstlen, int plus)
{
    size_t i, o = 0;

    if (dst == NULL || dstlen == 0)
        return SCOUT_HTTP_BAD;
    for (i = 0; i < n; i++) {
        int ch = (unsigned char) src[i], hi, lo;

        if (ch == '%') {
            if (i + 2 >= n)
                return SCOUT_HTTP_BAD;
            hi = hexval((unsigned char) src[i + 1]);
            lo = hexval((unsigned char) src[i + 2]);
            if (hi < 0 || lo < 0 || (hi | lo) == 0)
                return SCOUT_HTTP_BAD;
            ch = hi << 4 | lo;
            i += 2;
        } else if (plus && ch == '+') {
            ch = ' ';
        }
        if (o + 1 >= dstlen || o >= 0x7fffffff)
            return SCOUT_HTTP_BAD;
        dst[o++] = (char) ch;
    }
    dst[o] = '\0';
    return (int) o;
}

int
scout_http_unescape(const char *src, size_t srclen, char *dst, size_t dstlen)
{
    return decode(src, srclen, dst, dstlen, 0);
}

int
scout_http_query_value(const char *query, const char *name, char *buf,
                       size_t len)
{
    const char *q = query, *end, *eq;
    size_t      nlen = strlen(name);

    for (; *q != '\0'; q = *end ? end + 1 : end) {
        if ((end = strchr(q, '&')) == NULL)
            end = q + strlen(q);
        eq = memchr(q, '=', (size_t) (end - q));
        if ((size_t) ((eq ? eq : end) - q) == nlen
            && memcmp(q, name, nlen) == 0)
            return eq ? decode(eq + 1, (size_t) (end - eq - 1), buf, len, 1)
                      : decode("", 0, buf, len, 1);
    }
    return SCOUT_ERROR;
}
