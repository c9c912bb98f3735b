/*
 * http_head.c - an answer's head, byte for byte what the server has always
 * sent (test_http_wire pins it): "HTTP/1.1 <status> <reason>", Date,
 * Content-Type and Content-Length when there are, the handler's own
 * headers, then Connection when it must be said.
 *
 * Why not one snprintf: every answer to a blocking query writes a head, and
 * glibc's formatter took 3.7k instructions for it, a third of the answer's
 * whole cost beside the list it carries (callgrind, bench/propagation).
 * The head is fixed strings and two numbers: copied, and the numbers'
 * digits written, with the length known before a byte is written.  This
 * file must never write anything but what the head says; the body is
 * http.c's.
 */

#include "api/http_head.h"

#include <string.h>

const char *scout_http_reason(int status)
{
    static const struct { int code; const char *text; } tab[] = {
        {200, "OK"}, {201, "Created"}, {204, "No Content"}, {302, "Found"},
        {304, "Not Modified"}, {400, "Bad Request"}, {403, "Forbidden"},
        {404, "Not Found"}, {405, "Method Not Allowed"}, {409, "Conflict"},
        {413, "Payload Too Large"}, {414, "URI Too Long"},
        {429, "Too Many Requests"}, {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"}, {501, "Not Implemented"},
        {503, "Service Unavailable"}, {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"} };
    size_t i;

    for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
        if (tab[i].code == status)
            return tab[i].text;
    return status < 300 ? "OK" : status < 400 ? "Redirect"
         : status < 500 ? "Client Error" : "Server Error";
}

char *scout_http_put_u64(char *p, unsigned long long v)
{
    char d[20];
    int  n = 0;

    do {
        d[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = d[--n];
    return p;
}

#define LIT(s) s, sizeof(s) - 1

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

size_t scout_http_head_write(char *out, size_t room,
                             const scout_http_head_t *h)
{
    const char *why = scout_http_reason(h->status);
    const char *conn = !h->keepalive ? "Connection: close\r\n"
                       : h->http10 ? "Connection: keep-alive\r\n" : "";
    size_t      wl = strlen(why), dl = strlen(h->date), cl = strlen(conn);
    size_t      tl = h->ctype != NULL ? strlen(h->ctype) : 0;
    /* the numbers at their longest: a status is an int, a length 20 */
    size_t      need = 9 + 11 + 1 + wl + 2 + 6 + dl + 2
                       + (h->ctype != NULL ? 14 + tl + 2 : 0)
                       + (h->nobody ? 0 : 16 + 20 + 2) + h->extra_len + cl
                       + 2;
    char       *p = out;

    if (need > room)
        return 0;
    p = put(p, LIT("HTTP/1.1 "));
    if (h->status < 0) {
        *p++ = '-';
        p = scout_http_put_u64(p, -(unsigned long long) h->status);
    } else {
        p = scout_http_put_u64(p, (unsigned long long) h->status);
    }
    *p++ = ' ';
    p = put(p, why, wl);
    p = put(p, LIT("\r\nDate: "));
    p = put(p, h->date, dl);
    p = put(p, LIT("\r\n"));
    if (h->ctype != NULL) {
        p = put(p, LIT("Content-Type: "));
        p = put(p, h->ctype, tl);
        p = put(p, LIT("\r\n"));
    }
    if (!h->nobody) {
        p = put(p, LIT("Content-Length: "));
        p = scout_http_put_u64(p, h->clen);
        p = put(p, LIT("\r\n"));
    }
    if (h->extra_len > 0)
        p = put(p, h->extra, h->extra_len);
    p = put(p, conn, cl);
    p = put(p, LIT("\r\n"));
    return (size_t) (p - out);
}
