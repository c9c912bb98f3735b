/*
 * http_url.c - percent-decoding, query strings and the values of query
 * parameters for the HTTP server (http_url.h).  Pure string work, kept apart
 * from http.c, which is about connections: what a request's bytes mean, not
 * how they arrive.  A value is read whole or refused: a parser here never
 * stops at the first character it does not know and calls the rest a
 * default (strtoull takes "-1", strtod takes "0x2" and " 5").
 */
#include "api/http_url.h"

#include <stdint.h>
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

int
scout_http_parse_u64(const char *s, uint64_t *out)
{
    uint64_t n = 0;

    if (*s == '\0')
        return SCOUT_ERROR;
    for (; *s != '\0'; s++) {
        unsigned d = (unsigned) (unsigned char) *s - '0';

        if (d > 9 || n > (UINT64_MAX - d) / 10)
            return SCOUT_ERROR;
        n = n * 10 + d;
    }
    *out = n;
    return SCOUT_OK;
}

/* Go's time.ParseDuration, which Consul uses for ?wait=, without its sign:
 * "1m30s", "1.5s", "500ms".  A bare number is seconds, as scout has always
 * taken it.  Digits are summed as doubles: a huge value only saturates
 * (callers cap it), it never becomes NaN or negative. */
int
scout_http_parse_duration(const char *s, double *secs)
{
    static const struct { const char *unit; double scale; } units[] = {
        { "ns", 1e-9 }, { "us", 1e-6 }, { "\xc2\xb5s", 1e-6 },
        { "ms", 1e-3 }, { "s", 1. }, { "m", 60. }, { "h", 3600. } };
    double total = 0;
    int    parts = 0;

    while (*s != '\0') {
        double v = 0, scale = 1;
        int    digits = 0;
        size_t i, n = 0;

        for (; *s >= '0' && *s <= '9'; s++, digits++)
            v = v * 10 + (*s - '0');
        if (*s == '.')
            for (s++; *s >= '0' && *s <= '9'; s++, digits++)
                v += (*s - '0') * (scale /= 10);
        if (digits == 0)
            return SCOUT_ERROR;
        if (*s == '\0' && parts == 0) {        /* a bare number */
            total = v;
            parts++;
            break;
        }
        /* "ms" is tried before "m", which would take its first letter */
        for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
            if (strncmp(s, units[i].unit, n = strlen(units[i].unit)) == 0)
                break;
        if (i == sizeof(units) / sizeof(units[0]))
            return SCOUT_ERROR;
        total += v * units[i].scale;
        s += n;
        parts++;
    }
    if (parts == 0)
        return SCOUT_ERROR;
    *secs = total;
    return SCOUT_OK;
}

/* http_parser_parse_url cost 1.2k instructions a request (its byte-at-a-
 * time state machine run again over a URL the parser has just walked;
 * bench/propagation, a blocking consumer's next request).  In an accepted
 * request line every byte of the target went through that same state
 * machine (parse_url_char: a byte it refuses is HPE_INVALID_URL before the
 * message completes), and from '/' on it has three states only: the path
 * until the first '?' or '#', then the query until the first '#', then the
 * fragment.  test_http_target holds this to http_parser_parse_url over
 * random targets the parser accepts. */
int
scout_http_split_target(const char *url, size_t len, size_t *plen,
                        size_t *qoff, size_t *qlen)
{
    size_t p = 0, q;

    if (len == 0 || url[0] != '/')
        return SCOUT_ERROR;
    while (p < len && url[p] != '?' && url[p] != '#')
        p++;
    *plen = p;
    *qoff = p;
    *qlen = 0;
    if (p < len && url[p] == '?') {
        for (q = p + 1; q < len && url[q] != '#'; q++)
            ;
        *qoff = p + 1;
        *qlen = q - (p + 1);
    }
    return SCOUT_OK;
}
