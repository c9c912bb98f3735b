/*
 * endpoint_json.c -- an endpoint set's JSON form: each endpoint's object,
 * made once in its life and kept with it, and the set's array, their join.
 *
 * Every byte of a string (id, host, status, meta keys and values) is
 * written by jansson, the packaged writer, never escaped here.  The
 * object's frame -- our own seven ASCII keys, the separators
 * JSON_COMPACT puts between them, and the three numbers' digits -- is
 * written around jansson's strings, without building a jansson tree: a
 * reused tree still cost ~13k instructions a new endpoint (the dump's loop
 * check of both objects, a formatter per number, seven keys escaped; the
 * consumer's largest cost after noticing a change, bench/propagation).
 * Whatever this path cannot promise to write as jansson's dump of a fresh
 * tree would (meta keys not strictly ascending, so maybe a key twice; a
 * string jansson refuses; an object past the stack buffer) goes down the
 * fresh tree's path instead, so the bytes are the fresh tree's in every
 * case (test_epset).
 */
#include "endpoint.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "scout.h"

#define DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER)

/* The fresh tree: what every list's bytes are held to. */
static json_t *
endpoint_tree(const scout_endpoint_t *ep)
{
    json_t *o = json_object(), *meta = json_object();

    if (o == NULL || meta == NULL) {
        json_decref(o);
        json_decref(meta);
        return NULL;
    }
    for (int j = 0; j < ep->nmeta; j++)
        json_object_set_new(meta, ep->meta[j].key,
                            json_string(ep->meta[j].value));
    json_object_set_new(o, "id", json_string(ep->id));
    json_object_set_new(o, "host", json_string(ep->host));
    json_object_set_new(o, "port", json_integer(ep->port));
    json_object_set_new(o, "weight", json_integer(ep->weight));
    json_object_set_new(o, "status", json_string(ep->status));
    json_object_set_new(o, "zxid", json_integer(ep->zxid));
    json_object_set_new(o, "meta", meta);
    return o;
}

/* The text jansson dumps of o, in a malloc'd copy of its exact size (most
 * fit the stack buffer: no growing buffer, no second copy). */
static char *
tree_dumped(const json_t *o, size_t *len)
{
    char buf[1024], *out;
    size_t n = json_dumpb(o, buf, sizeof(buf), DUMP_FLAGS);

    if (n == 0)
        return NULL;
    if (n > sizeof(buf)) {
        if ((out = json_dumps(o, DUMP_FLAGS)) != NULL)
            *len = strlen(out);
        return out;
    }
    if ((out = malloc(n + 1)) == NULL)
        return NULL;
    memcpy(out, buf, n);
    out[n] = '\0';
    *len = n;
    return out;
}

/* ---- the frame around jansson's strings ---------------------------------- */

typedef struct {
    char *p, *end;   /* NULL p: out of room or refused */
} out_t;

static void
put_raw(out_t *o, const char *s, size_t n)
{
    if (o->p == NULL)
        return;
    if ((size_t)(o->end - o->p) < n) {
        o->p = NULL;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

#define PUT_LIT(o, lit) put_raw((o), (lit), sizeof(lit) - 1)

/* s as jansson dumps a string: one json_t reused per thread, given s
 * without its UTF-8 check (the dump makes it: a string that is not UTF-8
 * fails there and sends the endpoint down the fresh tree's path, which
 * leaves such a value out as json_string does). */
static void
put_string(out_t *o, const char *s)
{
    static __thread json_t *str;
    size_t room, n;

    if (o->p == NULL)
        return;
    if (s == NULL) {
        o->p = NULL;
        return;
    }
    if (str == NULL && (str = json_string_nocheck("")) == NULL) {
        o->p = NULL;
        return;
    }
    room = (size_t)(o->end - o->p);
    if (json_string_set_nocheck(str, s) != 0
        || (n = json_dumpb(str, o->p, room, DUMP_FLAGS | JSON_ENCODE_ANY))
               == 0
        || n > room) {
        o->p = NULL;
        return;
    }
    o->p += n;
}

/* v's decimal digits, as jansson's "%" JSON_INTEGER_FORMAT writes them. */
static void
put_int(out_t *o, long long v)
{
    char tmp[24], *t = tmp + sizeof(tmp);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v
                                 : (unsigned long long)v;

    do {
        *--t = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--t = '-';
    put_raw(o, t, (size_t)(tmp + sizeof(tmp) - t));
}

/* The fresh tree's meta has each key once, in the order set: the same as
 * the endpoint's order only if no key comes twice, which keys in strictly
 * ascending order promise (endpoint.h: meta is sorted by key). */
static int
meta_ascending(const scout_endpoint_t *ep)
{
    for (int j = 1; j < ep->nmeta; j++)
        if (ep->meta[j - 1].key == NULL || ep->meta[j].key == NULL
            || strcmp(ep->meta[j - 1].key, ep->meta[j].key) >= 0)
            return 0;
    return 1;
}

/* The object into buf, as jansson dumps the fresh tree; 0 when this path
 * cannot promise that (the caller takes the tree's). */
static size_t
framed(const scout_endpoint_t *ep, char *buf, size_t size)
{
    out_t o = { buf, buf + size };

    if (!meta_ascending(ep))
        return 0;
    PUT_LIT(&o, "{\"id\":");
    put_string(&o, ep->id);
    PUT_LIT(&o, ",\"host\":");
    put_string(&o, ep->host);
    PUT_LIT(&o, ",\"port\":");
    put_int(&o, ep->port);
    PUT_LIT(&o, ",\"weight\":");
    put_int(&o, ep->weight);
    PUT_LIT(&o, ",\"status\":");
    put_string(&o, ep->status);
    PUT_LIT(&o, ",\"zxid\":");
    put_int(&o, ep->zxid);
    PUT_LIT(&o, ",\"meta\":{");
    for (int j = 0; j < ep->nmeta; j++) {
        if (j > 0)
            PUT_LIT(&o, ",");
        put_string(&o, ep->meta[j].key);
        PUT_LIT(&o, ":");
        put_string(&o, ep->meta[j].value);
    }
    PUT_LIT(&o, "}}");
    return o.p == NULL ? 0 : (size_t)(o.p - buf);
}

/* One endpoint's JSON object, made once in its life.  Building a jansson
 * tree of the whole set for each index was a quarter of the agent's CPU
 * per change seen by a blocking-query consumer (50 endpoints; perf,
 * bench/propagation): now a change renders only the endpoints it brought. */
static int
endpoint_text(scout_endpoint_t *ep)
{
    char buf[1024];
    json_t *o;
    size_t len = 0;

    if (ep->json != NULL)
        return SCOUT_OK;
    if ((len = framed(ep, buf, sizeof(buf))) > 0) {
        if ((ep->json = malloc(len + 1)) == NULL)
            return SCOUT_ERROR;
        memcpy(ep->json, buf, len);
        ep->json[len] = '\0';
    } else {
        if ((o = endpoint_tree(ep)) == NULL)
            return SCOUT_ERROR;
        ep->json = tree_dumped(o, &len);
        json_decref(o);
    }
    if (ep->json == NULL)
        return SCOUT_ERROR;
    if (len >= SCOUT_ENDPOINT_MAX_JSON) {   /* cannot be: see endpoint.h */
        free(ep->json);
        ep->json = NULL;
        return SCOUT_ERROR;
    }
    ep->json_len = (uint32_t)len;
    return SCOUT_OK;
}

/* The array is the objects jansson made, joined with "," inside "[...]":
 * byte for byte what json_dumps(JSON_COMPACT) of the array gives.  keep 0:
 * the objects made for this list are freed once it is joined (a list no
 * blocking query asks for again: ~110 bytes an endpoint not held). */
static const char *
epset_render(scout_epset_t *set, size_t *len, int keep)
{
    size_t total = 2;
    char *out, *p;
    unsigned *made = NULL, nmade = 0;

    if (set->json != NULL) {
        *len = set->json_len;
        return set->json;
    }
    if (!keep && set->n > 0
        && (made = malloc((size_t)set->n * sizeof(*made))) == NULL)
        return NULL;
    for (unsigned i = 0; i < set->n; i++) {
        if (made != NULL && set->eps[i]->json == NULL)
            made[nmade++] = i;
        if (endpoint_text(set->eps[i]) != SCOUT_OK) {
            out = NULL;
            goto done;
        }
        total += set->eps[i]->json_len + 1;
    }
    if ((out = malloc(total + 1)) == NULL)
        goto done;
    p = out;
    *p++ = '[';
    for (unsigned i = 0; i < set->n; i++) {
        if (i > 0)
            *p++ = ',';
        memcpy(p, set->eps[i]->json, set->eps[i]->json_len);
        p += set->eps[i]->json_len;
    }
    *p++ = ']';
    *p = '\0';
    set->json = out;
    set->json_len = (size_t)(p - out);
    *len = set->json_len;
done:
    for (unsigned k = 0; k < nmade; k++) {
        scout_endpoint_t *ep = set->eps[made[k]];

        free(ep->json);
        ep->json = NULL;
        ep->json_len = 0;
    }
    free(made);
    return out;
}

const char *
scout_epset_json(scout_epset_t *set, size_t *len)
{
    return epset_render(set, len, 1);
}

static char *
epset_take(scout_epset_t *set, size_t *len, int keep)
{
    char *json;

    if (epset_render(set, len, keep) == NULL)
        return NULL;
    json = set->json;
    set->json = NULL;
    /* a list whose every object is kept can be the next one's base */
    set->edit.op = keep ? SCOUT_EPSET_BASE : SCOUT_EPSET_NO_BASE;
    set->edit.at = 0;
    set->edit.gone = 0;
    return json;
}

/* The next list of a blocking query's set from its last one, prev: a
 * change brings one endpoint at most (bench/propagation), yet joining
 * every kept object again cost 3.3k instructions a change for 50 of them
 * (a loop, a length and a memcpy each), now two copies of prev's runs
 * and the new object.  Base endpoint k starts at 1 + the sum over j < k
 * of (its length + 1), from the lengths the set still holds (the one let
 * go, its edit's); prev must end where that sum says, or it is not the
 * base and the caller joins the whole list.  NULL: join instead. */
static char *
epset_spliced(scout_epset_t *set, const char *prev, size_t prev_len,
              size_t *len)
{
    scout_epset_edit_t e = set->edit;
    unsigned n = set->n, at = e.at, m, k, after;
    scout_endpoint_t *fresh = NULL;
    size_t sum = 1, start_at, start_next;
    char *out, *p;

    if (prev == NULL || e.op == SCOUT_EPSET_NO_BASE || prev_len < 2
        || prev[0] != '[' || prev[prev_len - 1] != ']')
        return NULL;
    if (e.op == SCOUT_EPSET_BASE)
        at = 0;
    if (e.op == SCOUT_EPSET_INSERTED) {
        if (n == 0 || at >= n)
            return NULL;
        m = n - 1;
        fresh = set->eps[at];
        after = at + 1;              /* base endpoint at is eps[at + 1] */
    } else if (e.op == SCOUT_EPSET_REPLACED) {
        if (at >= n)
            return NULL;
        m = n;
        fresh = set->eps[at];
        after = at + 1;
    } else if (e.op == SCOUT_EPSET_DELETED) {
        if (at > n)
            return NULL;
        m = n + 1;
        after = at;                  /* base endpoint at + 1 is eps[at] */
    } else {
        m = n;
        after = 0;
    }
    for (k = 0; k < at; k++) {
        if (set->eps[k]->json == NULL)
            return NULL;
        sum += set->eps[k]->json_len + 1;
    }
    start_at = sum;
    if (e.op == SCOUT_EPSET_REPLACED || e.op == SCOUT_EPSET_DELETED)
        sum += (size_t)e.gone + 1;
    start_next = sum;
    for (k = after; k < n; k++) {
        if (set->eps[k]->json == NULL)
            return NULL;
        sum += set->eps[k]->json_len + 1;
    }
    if (m == 0 ? prev_len != 2 : sum != prev_len)
        return NULL;
    if (fresh != NULL && endpoint_text(fresh) != SCOUT_OK)
        return NULL;
    if ((out = malloc(prev_len + (fresh ? fresh->json_len + 1 : 0) + 1))
        == NULL)
        return NULL;
    p = out;
    *p++ = '[';
    if (at > 0) {                    /* base endpoints [0, at) */
        memcpy(p, prev + 1, start_at - 2);
        p += start_at - 2;
    }
    if (fresh != NULL) {
        if (p > out + 1)
            *p++ = ',';
        memcpy(p, fresh->json, fresh->json_len);
        p += fresh->json_len;
    }
    if (start_next < prev_len - 1) { /* base endpoints after the edit */
        if (p > out + 1)
            *p++ = ',';
        memcpy(p, prev + start_next, prev_len - 1 - start_next);
        p += prev_len - 1 - start_next;
    }
    *p++ = ']';
    *p = '\0';
    *len = (size_t)(p - out);
    set->edit.op = SCOUT_EPSET_BASE;
    set->edit.at = 0;
    set->edit.gone = 0;
    return out;
}

char *
scout_epset_json_take_after(scout_epset_t *set, const char *prev,
                            size_t prev_len, size_t *len)
{
    char *json;

    if (set->json == NULL
        && (json = epset_spliced(set, prev, prev_len, len)) != NULL)
        return json;
    return epset_take(set, len, 1);
}

char *
scout_epset_json_take(scout_epset_t *set, size_t *len)
{
    return epset_take(set, len, 1);
}

char *
scout_epset_json_take_once(scout_epset_t *set, size_t *len)
{
    return epset_take(set, len, 0);
}
