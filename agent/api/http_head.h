/*
 * http_head.h - the bytes of an answer's head (status line and headers),
 * written by http.c's out_response for every answer.
 */
#ifndef SCOUT_HTTP_HEAD_H
#define SCOUT_HTTP_HEAD_H

#include <stddef.h>

/* The reason phrase of a status ("Not Found"); a class's for a code not in
 * the table. */
const char *scout_http_reason(int status);

/* v in decimal at p, no NUL: returns the end.  At most 20 bytes. */
char *scout_http_put_u64(char *p, unsigned long long v);

/* What a head says.  ctype NULL: no Content-Type.  nobody (204, 304): no
 * Content-Length at all; else clen is it.  extra: whole header lines
 * ("Name: value\r\n"...), extra_len bytes. */
typedef struct {
    int         status;
    const char *date;          /* an HTTP-date, NUL-terminated */
    const char *ctype;
    size_t      clen;
    int         nobody;
    const char *extra;
    size_t      extra_len;
    int         keepalive;
    int         http10;
} scout_http_head_t;

/* Writes the head, its closing empty line included, into out (room bytes,
 * no NUL): its length, or 0 when it does not fit (out is then
 * unspecified). */
size_t scout_http_head_write(char *out, size_t room,
                             const scout_http_head_t *h);

#endif
