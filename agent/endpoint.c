/*
 * endpoint.c -- endpoints and their sets: one allocation an endpoint, the
 * rule every endpoint keeps, a set sorted by id.  Their JSON form is
 * endpoint_json.c's; a change here only drops the set's joined list.
 */
#include "endpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scout.h"

static char *
put(char *dst, const char *src, size_t len)
{
    memcpy(dst, src, len);
    dst[len] = '\0';
    return dst + len + 1;
}

/* Layout of one allocation: the struct, the meta array (aligned, as it
 * follows the struct), id, host, status, then the meta strings. */
scout_endpoint_t *
scout_endpoint_new_meta(const char *id, size_t id_len, const char *host,
                        size_t host_len, const char *status,
                        size_t status_len, unsigned nmeta, size_t meta_bytes)
{
    size_t arr = (size_t)nmeta * sizeof(scout_meta_t);
    scout_endpoint_t *ep;
    char *p;

    if (nmeta > SCOUT_ENDPOINT_MAX_META
        || meta_bytes > SCOUT_ENDPOINT_MAX_BYTES)
        return NULL;
    ep = malloc(sizeof(*ep) + arr + id_len + host_len + status_len + 3
                + meta_bytes + 2 * (size_t)nmeta);
    if (ep == NULL)
        return NULL;
    memset(ep, 0, sizeof(*ep));
    if (nmeta > 0) {
        ep->meta = (scout_meta_t *)(ep + 1);
        ep->meta_inline = 1;
    }
    p = (char *)(ep + 1) + arr;
    ep->id = p;
    p = put(p, id, id_len);
    ep->host = p;
    p = put(p, host, host_len);
    ep->status = p;
    put(p, status, status_len);
    return ep;
}

scout_endpoint_t *
scout_endpoint_new(const char *id, size_t id_len, const char *host,
                   size_t host_len, const char *status, size_t status_len)
{
    return scout_endpoint_new_meta(id, id_len, host, host_len, status,
                                   status_len, 0, 0);
}

void
scout_endpoint_add_meta(scout_endpoint_t *ep, const char *k, size_t kl,
                        const char *v, size_t vl)
{
    scout_meta_t *m = &ep->meta[ep->nmeta];
    /* the room starts after status; each entry follows the last one */
    char *p = ep->nmeta == 0 ? ep->status + strlen(ep->status) + 1
              : ep->meta[ep->nmeta - 1].value
                + strlen(ep->meta[ep->nmeta - 1].value) + 1;

    m->key = p;
    p = put(p, k, kl);
    m->value = p;
    put(p, v, vl);
    ep->nmeta++;
}

static int
meta_cmp(const void *a, const void *b)
{
    return strcmp(((const scout_meta_t *)a)->key,
                  ((const scout_meta_t *)b)->key);
}

void
scout_endpoint_sort_meta(scout_endpoint_t *ep)
{
    if (ep->nmeta > 1)
        qsort(ep->meta, (size_t)ep->nmeta, sizeof(*ep->meta), meta_cmp);
}

void
scout_endpoint_free(scout_endpoint_t *ep)
{
    if (ep == NULL)
        return;
    if (!ep->meta_inline) {
        for (int j = 0; j < ep->nmeta; j++) {
            free(ep->meta[j].key);
            free(ep->meta[j].value);
        }
        free(ep->meta);
    }
    free(ep->json);
    free(ep);
}

/* ---- the rule (endpoint.h) --------------------------------------------- */

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past
 * U+10FFFF -- what jansson accepts, so JSON output never fails on it. */
static int
utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned c = s[i], n, cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i <= n)
            return 0;
        for (unsigned k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)
            || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

const char *
scout_endpoint_check_text(const char *s, size_t len)
{
    if (len > SCOUT_ENDPOINT_MAX_STR)
        return "is over the 65536-byte limit";
    if (memchr(s, '\0', len) != NULL)
        return "contains a NUL byte";
    if (!utf8_valid((const unsigned char *)s, len))
        return "is not valid UTF-8";
    return NULL;
}

/* What the codecs produce (scout.util.endpoint's host()): characters only,
 * no DNS-level checking. */
static int
host_valid_n(const char *h, size_t n)
{
    if (n == 0 || n > SCOUT_ENDPOINT_MAX_HOST)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'
              || c == ':' || c == '%'))
            return 0;
    }
    return 1;
}

static int
host_valid(const char *h)
{
    return host_valid_n(h, strlen(h));
}

/* scout.util.endpoint's port_str(): 1-5 decimal digits, 1..65535. */
static int
port_str_valid(const char *p, size_t n)
{
    long v = 0;

    if (n == 0 || n > 5)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/* split_hostport's two patterns, ^%[([^%]]*)%]:([^:]*)$ (the host must
 * hold a colon) and ^([^:]*):([^:]*)$, then host() and port_str(). */
int
scout_endpoint_is_hostport(const char *s)
{
    const char *colon, *host = s, *port;
    size_t hn;

    if (s[0] == '[') {
        const char *close = strchr(s + 1, ']');

        if (close == NULL || close[1] != ':')
            return 0;
        host = s + 1;
        hn = (size_t)(close - host);
        if (memchr(host, ':', hn) == NULL)
            return 0;
        port = close + 2;
    } else {
        colon = strchr(s, ':');
        if (colon == NULL)
            return 0;
        hn = (size_t)(colon - s);
        port = colon + 1;
    }
    if (strchr(port, ':') != NULL)
        return 0;
    return host_valid_n(host, hn) && port_str_valid(port, strlen(port));
}

/* scout.util.endpoint's status_ok(): ^[a-z][a-z0-9_]*$, at most 32. */
static int
status_valid(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 32 || s[0] < 'a' || s[0] > 'z')
        return 0;
    for (size_t i = 1; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')
              || s[i] == '_'))
            return 0;
    }
    return 1;
}

/* A string of the endpoint: text rule; its length is added to *total. */
static int
check_str(const char *s, const char *what, size_t *total, char *why,
          size_t len)
{
    size_t n = s != NULL ? strlen(s) : 0;
    const char *bad = s != NULL ? scout_endpoint_check_text(s, n)
                                : "is missing";

    *total += n;
    if (bad == NULL)
        return SCOUT_OK;
    snprintf(why, len, "%s %s", what, bad);
    return SCOUT_ERROR;
}

/* The rule's phrases, once: a child refused at the Lua boundary
 * (scout_endpoint_check_parts) says what the endpoint itself would say. */
static int
check_fields(const char *id, const char *host, const char *status, int port,
             int weight, char *why, size_t len)
{
    if (id[0] == '\0') {
        snprintf(why, len, "empty id");
        return SCOUT_ERROR;
    }
    if (!host_valid(host)) {
        snprintf(why, len, "host \"%.64s\" is not a host name or IP "
                 "literal", host);
        return SCOUT_ERROR;
    }
    if (!status_valid(status)) {
        snprintf(why, len, "status \"%.40s\" is not a short lowercase word",
                 status);
        return SCOUT_ERROR;
    }
    if (port < 1 || port > 65535) {
        snprintf(why, len, "port %d is not in 1-65535", port);
        return SCOUT_ERROR;
    }
    if (weight < 0) {
        snprintf(why, len, "weight %d is negative", weight);
        return SCOUT_ERROR;
    }
    return SCOUT_OK;
}

static int
check_total(size_t total, char *why, size_t len)
{
    if (total > SCOUT_ENDPOINT_MAX_BYTES) {
        snprintf(why, len, "%zu bytes of strings, over the %u limit", total,
                 SCOUT_ENDPOINT_MAX_BYTES);
        return SCOUT_ERROR;
    }
    return SCOUT_OK;
}

int
scout_endpoint_check(const scout_endpoint_t *ep, char *why, size_t len)
{
    size_t total = 0;

    if (check_str(ep->id, "id", &total, why, len) != SCOUT_OK
        || check_str(ep->host, "host", &total, why, len) != SCOUT_OK
        || check_str(ep->status, "status", &total, why, len) != SCOUT_OK
        || check_fields(ep->id, ep->host, ep->status, ep->port, ep->weight,
                        why, len) != SCOUT_OK)
        return SCOUT_ERROR;
    if (ep->nmeta < 0 || (unsigned)ep->nmeta > SCOUT_ENDPOINT_MAX_META
        || (ep->nmeta > 0 && ep->meta == NULL)) {
        snprintf(why, len, "%d meta entries, over the %u limit", ep->nmeta,
                 SCOUT_ENDPOINT_MAX_META);
        return SCOUT_ERROR;
    }
    for (int j = 0; j < ep->nmeta; j++) {
        if (check_str(ep->meta[j].key, "a meta key", &total, why, len)
            != SCOUT_OK
            || check_str(ep->meta[j].value, "a meta value", &total, why, len)
               != SCOUT_OK)
            return SCOUT_ERROR;
        if (j > 0 && strcmp(ep->meta[j - 1].key, ep->meta[j].key) >= 0) {
            snprintf(why, len, "meta keys not sorted and unique at \"%.64s\"",
                     ep->meta[j].key);
            return SCOUT_ERROR;
        }
    }
    return check_total(total, why, len);
}

int
scout_endpoint_check_parts(const char *id, const char *host,
                           const char *status, int port, int weight,
                           size_t total, char *why, size_t len)
{
    if (check_fields(id, host, status, port, weight, why, len) != SCOUT_OK)
        return SCOUT_ERROR;
    return check_total(total, why, len);
}

/* ---- sets ---------------------------------------------------------------- */

void
scout_epset_init(scout_epset_t *set)
{
    memset(set, 0, sizeof(*set));
}

void
scout_epset_free(scout_epset_t *set)
{
    for (unsigned i = 0; i < set->n; i++)
        scout_endpoint_free(set->eps[i]);
    free(set->eps);
    free(set->json);
    memset(set, 0, sizeof(*set));
}

/* The index of id in the set, or -(where it would go) - 1. */
static long
epset_search(const scout_epset_t *set, const char *id)
{
    unsigned lo = 0, hi = set->n;

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        int c = strcmp(set->eps[mid]->id, id);

        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(long)lo - 1;
}

scout_endpoint_t *
scout_epset_find(const scout_epset_t *set, const char *id)
{
    long i = epset_search(set, id);

    return i >= 0 ? set->eps[i] : NULL;
}

/* The joined list is dropped; the edit is noted when it is the first
 * since a list handed over for a blocking query (endpoint.h). */
static void
stale_edit(scout_epset_t *set, unsigned op, unsigned at, uint32_t gone)
{
    if (set->json != NULL) {
        free(set->json);
        set->json = NULL;
        set->edit.op = SCOUT_EPSET_NO_BASE;
    } else if (set->edit.op == SCOUT_EPSET_BASE && at < (1u << 29)) {
        set->edit.op = op;
        set->edit.at = at;
        set->edit.gone = gone;
    } else {
        set->edit.op = SCOUT_EPSET_NO_BASE;
    }
}

static void
stale(scout_epset_t *set)
{
    stale_edit(set, SCOUT_EPSET_NO_BASE, 0, 0);
}

void
scout_epset_del(scout_epset_t *set, const char *id)
{
    long i = epset_search(set, id);

    if (i < 0)
        return;
    stale_edit(set, SCOUT_EPSET_DELETED, (unsigned)i, set->eps[i]->json_len);
    scout_endpoint_free(set->eps[i]);
    set->n--;
    memmove(&set->eps[i], &set->eps[i + 1],
            (set->n - (unsigned)i) * sizeof(*set->eps));
}

unsigned
scout_epset_drop_invalid(scout_epset_t *set, char *why, size_t len)
{
    char one[SCOUT_ERR_LEN];
    unsigned n = 0, kept = 0;

    for (unsigned i = 0; i < set->n; i++) {
        scout_endpoint_t *ep = set->eps[i];

        if (scout_endpoint_check(ep, one, sizeof(one)) == SCOUT_OK) {
            set->eps[kept++] = ep;
            continue;
        }
        if (n++ == 0)
            snprintf(why, len, "endpoint %.64s: %s", ep->id, one);
        scout_endpoint_free(ep);
    }
    set->n = kept;
    if (n > 0)
        stale(set);
    return n;
}

/* Room for one more: grows by half (small services stay small: a set of
 * 10 holds 12 slots, not 16). */
static int
epset_room(scout_epset_t *set)
{
    scout_endpoint_t **e;
    unsigned cap;

    if (set->n < set->cap)
        return SCOUT_OK;
    cap = set->cap < 4 ? 4 : set->cap + set->cap / 2;
    if ((e = realloc(set->eps, (size_t)cap * sizeof(*e))) == NULL)
        return SCOUT_ERROR;
    set->eps = e;
    set->cap = cap;
    return SCOUT_OK;
}

int
scout_epset_put(scout_epset_t *set, scout_endpoint_t *ep)
{
    long i = epset_search(set, ep->id);

    if (i >= 0) {
        stale_edit(set, SCOUT_EPSET_REPLACED, (unsigned)i,
                   set->eps[i]->json_len);
        scout_endpoint_free(set->eps[i]);
        set->eps[i] = ep;
    } else {
        if (epset_room(set) != SCOUT_OK) {
            scout_endpoint_free(ep);
            return SCOUT_ERROR;
        }
        i = -i - 1;
        memmove(&set->eps[i + 1], &set->eps[i],
                (set->n - (unsigned)i) * sizeof(*set->eps));
        set->eps[i] = ep;
        set->n++;
        stale_edit(set, SCOUT_EPSET_INSERTED, (unsigned)i, 0);
    }
    return SCOUT_OK;
}

int
scout_epset_append(scout_epset_t *set, scout_endpoint_t *ep)
{
    if (epset_room(set) != SCOUT_OK) {
        scout_endpoint_free(ep);
        return SCOUT_ERROR;
    }
    set->eps[set->n++] = ep;
    stale_edit(set, SCOUT_EPSET_INSERTED, set->n - 1, 0);
    return SCOUT_OK;
}
