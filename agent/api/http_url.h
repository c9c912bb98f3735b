/*
 * http_url.h - what a request's URL means: percent-decoding and the value
 * of a query parameter.  scout_http_unescape() (http.h) lives here too.
 */
#ifndef SCOUT_HTTP_URL_H
#define SCOUT_HTTP_URL_H

#include <stddef.h>

/* The decoded value of parameter name in query ("a=1&b=x%20y", '+' is a
 * space) into buf: its length, SCOUT_ERROR when absent, SCOUT_HTTP_BAD
 * when undecodable or too long for buf.  The first occurrence wins. */
int scout_http_query_value(const char *query, const char *name, char *buf,
                           size_t len);

#endif
