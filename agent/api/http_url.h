/*
 * http_url.h - what a request's URL means: percent-decoding and the value
 * of a query parameter.  scout_http_unescape() (http.h) lives here too.
 */
#ifndef SCOUT_HTTP_URL_H
#define SCOUT_HTTP_URL_H

#include <stddef.h>
#include <stdint.h>

/* The decoded value of parameter name in query ("a=1&b=x%20y", '+' is a
 * space) into buf: its length, SCOUT_ERROR when absent, SCOUT_HTTP_BAD
 * when undecodable or too long for buf.  The first occurrence wins. */
int scout_http_query_value(const char *query, const char *name, char *buf,
                           size_t len);

/* A whole decimal number from 0 to 2^64-1, digits only (no sign, space or
 * base prefix): SCOUT_OK with *out set, or SCOUT_ERROR. */
int scout_http_parse_u64(const char *s, uint64_t *out);

/* A Consul-style duration: "10s", "500ms", "1m30s", "1.5h" (units ns, us,
 * ms, s, m, h), or a bare number of seconds ("2", "0.5").  No sign, no
 * exponent, no hex, no "nan" or "inf", no spaces.  SCOUT_OK with *secs set
 * (finite and >= 0), or SCOUT_ERROR. */
int scout_http_parse_duration(const char *s, double *secs);

/* An origin-form request target ("/path?query#fragment", the form every
 * client of the API sends) that http-parser accepted in a request line:
 * its path is [0, *plen) and its query [*qoff, *qoff + *qlen) (*qlen 0
 * when none), as http_parser_parse_url gives them; SCOUT_ERROR for any
 * other form (not starting with '/'), which the caller hands to
 * http_parser_parse_url. */
int scout_http_split_target(const char *url, size_t len, size_t *plen,
                            size_t *qoff, size_t *qlen);

#endif
