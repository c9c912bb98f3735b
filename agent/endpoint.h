/*
 * endpoint.h -- a service's published endpoints, sorted by id.
 *
 * The policy hands over differences (endpoints new or replaced, ids gone);
 * the set applies them with a binary search each (and a memmove of the
 * pointers after the place) and renders its JSON only when someone asks
 * after a change, so a change does no work per endpoint that did not
 * change: each endpoint's JSON object is made once and kept (an endpoint
 * never changes; a change replaces it), and the set's array is those
 * objects joined.  JSON output is sorted by id and deterministic.
 */
#ifndef SCOUT_ENDPOINT_H
#define SCOUT_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *key;
    char *value;
} scout_meta_t;

/* id, host and status live in the endpoint's own allocation (one malloc
 * instead of four: at 100k endpoints that is 8 MB of RSS).  Meta made by
 * scout_endpoint_new_meta lives there too (meta_inline): a dubbo endpoint
 * has 15-25 entries, and two mallocs each cost more than the bytes.  Meta
 * built by hand (the snapshot reader, tests) is an array of malloc'd
 * strings, freed one by one. */
/* Fields ordered by size, no padding, 64 bytes: one of these per published
 * endpoint (100k at scale), and with its three short strings a typical one
 * fits malloc's 96-byte chunk (80 bytes of fields took the 112 one, 1.6 MB
 * at 10,000 x 10).  No hash handle: a set is a sorted array of pointers
 * (8 bytes an endpoint where uthash's handle and buckets took ~70). */
typedef struct scout_endpoint_s {
    char          *id;        /* the znode name */
    char          *host;
    char          *status;
    scout_meta_t  *meta;      /* sorted by key */
    char          *json;      /* its JSON object, made the first time a
                                 blocking query's list holds it (kept while
                                 it lives); NULL before */
    int64_t        zxid;
    int            port;
    int            weight;
    int            nmeta;
    uint32_t       json_len:31;/* under SCOUT_ENDPOINT_MAX_JSON */
    uint32_t       meta_inline:1;/* meta is in this allocation */
} scout_endpoint_t;

/* An endpoint's JSON is its strings (SCOUT_ENDPOINT_MAX_BYTES, each byte
 * at most 6 escaped) and their syntax: far below this, which json_len
 * holds. */
#define SCOUT_ENDPOINT_MAX_JSON  (1u << 30)

/* A set is an array sorted by id (strcmp): a lookup is a binary search, a
 * put or a delete moves the pointers after it (a 5,000-endpoint service
 * moves 40 KB, microseconds), and readers walk eps[0..n) in id order. */
/* What changed since the last list handed over for a blocking query
 * (scout_epset_json_take_after): one edit at most, enough to make the next
 * list from that one by copying its unchanged runs.  It shares json_len's
 * bytes (a set is in every service: 10,000 of them at scale), as it is
 * only meaningful while json is NULL. */
enum {
    SCOUT_EPSET_NO_BASE = 0,  /* no list to splice (or too much changed) */
    SCOUT_EPSET_BASE,         /* that list, unchanged */
    SCOUT_EPSET_INSERTED,     /* ... with an endpoint inserted at at */
    SCOUT_EPSET_REPLACED,     /* ... with the one at at replaced */
    SCOUT_EPSET_DELETED       /* ... with the one at at deleted */
};

typedef struct {
    uint32_t op:3;
    uint32_t at:29;
    uint32_t gone;            /* json_len of the endpoint let go */
} scout_epset_edit_t;

typedef struct {
    scout_endpoint_t **eps;   /* n of them, ascending ids; cap allocated */
    unsigned          n;
    unsigned          cap;
    char             *json;   /* rendered on demand; NULL = stale */
    union {
        size_t             json_len;  /* while json is set */
        scout_epset_edit_t edit;      /* while json is NULL */
    };
} scout_epset_t;

/* A zeroed endpoint holding copies of the three strings (lengths given, so
 * callers with counted strings need no NUL); NULL when out of memory. */
scout_endpoint_t *scout_endpoint_new(const char *id, size_t id_len,
                                     const char *host, size_t host_len,
                                     const char *status, size_t status_len);
/* The same with room, in the one allocation, for up to nmeta meta entries
 * whose keys and values take meta_bytes (without their NULs); add them with
 * scout_endpoint_add_meta, in any order, then scout_endpoint_sort_meta. */
scout_endpoint_t *scout_endpoint_new_meta(const char *id, size_t id_len,
                                          const char *host, size_t host_len,
                                          const char *status,
                                          size_t status_len, unsigned nmeta,
                                          size_t meta_bytes);
/* Copies k and v into the room; the caller stays within what it asked. */
void scout_endpoint_add_meta(scout_endpoint_t *ep, const char *k, size_t kl,
                             const char *v, size_t vl);
void scout_endpoint_sort_meta(scout_endpoint_t *ep);
void scout_endpoint_free(scout_endpoint_t *ep);

/* The one rule an endpoint obeys before it is published anywhere (shm,
 * disk snapshot, JSON, templates) and when it is read back from the disk
 * snapshot: strings without NUL bytes, valid UTF-8 and within the limits
 * below (which the snapshot format also holds, so whatever passes here is
 * always written); id non-empty; host a host name or IP literal as the
 * codecs produce it (1-255 bytes of letters, digits, ".-_:%"); status a
 * short lowercase word; port 1-65535; weight 0..2^31-1; meta keys sorted
 * and unique.  Anything else is refused whole: a value is never cut or
 * rewritten on its way through. */
#define SCOUT_ENDPOINT_MAX_STR   65536u   /* one string, bytes             */
#define SCOUT_ENDPOINT_MAX_META  65536u   /* meta entries                  */
#define SCOUT_ENDPOINT_MAX_BYTES (1u << 20) /* all its strings together   */
#define SCOUT_ENDPOINT_MAX_HOST  255u

/* NULL when s[0..len) may cross: no NUL, valid UTF-8, not over the string
 * limit; else a short phrase ("contains a NUL byte"). */
const char *scout_endpoint_check_text(const char *s, size_t len);
/* 1 when the name is an address, "host:port" or "[v6]:port", exactly as
 * scout.util.endpoint's split_hostport() accepts it (the plain codec's
 * needs_data is its negation, asked here instead of in Lua per new child;
 * test_hostport holds the two to the same answers). */
int scout_endpoint_is_hostport(const char *s);
/* SCOUT_OK, or SCOUT_ERROR with "host is not a host name or IP
 * literal" and the like in why (len bytes). */
int scout_endpoint_check(const scout_endpoint_t *ep, char *why, size_t len);
/* The rest of scout_endpoint_check's rule, in its order, for an endpoint
 * not built yet whose strings already passed scout_endpoint_check_text (and
 * whose meta keys are unique): id, host, status, port, weight, and total,
 * the bytes of all its strings.  The Lua boundary asks it once per decoded
 * child without allocating the endpoint. */
int scout_endpoint_check_parts(const char *id, const char *host,
                               const char *status, int port, int weight,
                               size_t total, char *why, size_t len);

void scout_epset_init(scout_epset_t *set);
void scout_epset_free(scout_epset_t *set);
/* Takes ownership of ep, replacing an endpoint with the same id.
 * SCOUT_ERROR when out of memory: ep is freed and the set is unchanged. */
int  scout_epset_put(scout_epset_t *set, scout_endpoint_t *ep);
/* Takes ownership of ep, whose id is known to sort after every id in the
 * set (a reader of sorted input): no lookup.  SCOUT_ERROR as above. */
int  scout_epset_append(scout_epset_t *set, scout_endpoint_t *ep);
/* The endpoint with this id, or NULL. */
scout_endpoint_t *scout_epset_find(const scout_epset_t *set, const char *id);
void scout_epset_del(scout_epset_t *set, const char *id);
/* Drop every endpoint that breaks the rule above (what a file on disk may
 * hold); returns how many, and the first one's id and reason in why. */
unsigned scout_epset_drop_invalid(scout_epset_t *set, char *why, size_t len);
/* The set as a JSON array sorted by id; NULL on allocation failure.  Valid
 * until the next put/del. */
const char *scout_epset_json(scout_epset_t *set, size_t *len);
/* The same JSON handed over: the caller owns it (free) and the set keeps no
 * copy, so a list someone asked for is held once, by its reader (the
 * service's shared answer), not twice.  NULL on allocation failure. */
char *scout_epset_json_take(scout_epset_t *set, size_t *len);
/* The same for a list nobody is known to ask for again (no blocking
 * query): the endpoints' objects made for it are not kept (those made
 * before are), so a registry whose every list was read once does not hold
 * every endpoint's JSON (~110 bytes each, bench/scale LISTS=1). */
char *scout_epset_json_take_once(scout_epset_t *set, size_t *len);
/* scout_epset_json_take for a set whose last list so handed over was prev
 * (prev_len bytes; NULL if none is kept): when one endpoint came, went or
 * was replaced since, the list is prev's unchanged runs copied around it
 * (the same bytes), not every endpoint's JSON joined again. */
char *scout_epset_json_take_after(scout_epset_t *set, const char *prev,
                                  size_t prev_len, size_t *len);

#endif
