/*
 * service_source.c -- a service over several paths.
 *
 * Besides its own path, a service may depend on source paths its codec
 * declares (dubbo's configurators and routers: rules that shape the list).
 * Each is watched with the same machinery as the service's own path
 * (gap-free reads, delays, anti-entropy, ordering gates, spread); a batch
 * from any of them goes to the policy, and then the service's list is
 * judged again and published if it differs.  The set of sources is the
 * policy's answer after every batch, so it may change at run time: new
 * sources get a watch, dropped ones are retired.
 *
 * The service is judged only once every path has been read completely once
 * (a path that does not exist is an empty source), and only from a settled
 * view of its own path.  Nothing here talks to ZooKeeper directly.
 */
#include "service_int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scout.h"

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Only the nodes a source names have their data read. */
static void
src_needs_data(void *ud, const char *const *names, unsigned n,
               unsigned char *need)
{
    scout_source_t *src = ud;

    for (unsigned k = 0; k < n; k++) {
        const char *key = names[k];

        if (src->ndata < 0)
            need[k] = 1;        /* data = true: every child's */
        else
            need[k] = src->ndata > 0
                      && bsearch(&key, src->data, (size_t)src->ndata,
                                 sizeof(char *), cmp_str) != NULL;
    }
}

static int
src_delay(void *ud, const scout_event_t *ev)
{
    scout_source_t *src = ud;

    return scout_service_delay(src->svc, ev);
}

static void
src_update(void *ud)
{
    scout_source_t *src = ud;

    src->seen = 1;
    scout_service_refresh(src->svc);
}

static const scout_watch_cb_t src_cb = {
    src_needs_data, src_delay, src_update
};

static void
source_free(scout_source_t *src, int retire)
{
    if (src == NULL)
        return;
    if (src->watch != NULL) {
        if (retire)
            scout_watch_retire(src->watch);
        else
            scout_watch_free(src->watch);
    }
    for (int k = 0; k < src->ndata; k++)
        free(src->data[k]);
    free(src->data);
    free(src->key);
    free(src->path);
    free(src);
}

/* Takes d's strings (they are NULLed in d). */
static scout_source_t *
source_new(scout_service_t *s, scout_source_conf_t *d, char *err)
{
    scout_source_t *src = calloc(1, sizeof(*src));

    if (src == NULL) {
        scout_seterr(err, "out of memory");
        return NULL;
    }
    src->svc = s;
    src->key = d->key;
    src->path = d->path;
    src->data = d->data;
    src->ndata = d->ndata;
    d->key = d->path = NULL;
    d->data = NULL;
    d->ndata = 0;
    if (src->ndata > 1)
        qsort(src->data, (size_t)src->ndata, sizeof(char *), cmp_str);
    src->watch = scout_watch_new(s->loop, s->session, src->path, &src_cb, src,
                                 &s->stats, err);
    if (src->watch == NULL) {
        source_free(src, 0);
        return NULL;
    }
    scout_watch_set_anti_entropy(src->watch, s->anti_entropy_ms);
    scout_watch_cache(src->watch)->keep_data = 1;
    /* a session already connected sends no event: read now */
    if (scout_session_state(s->session) == SCOUT_SESSION_CONNECTED)
        scout_watch_on_session(src->watch, SCOUT_SESSION_CONNECTED, 1, 0);
    scout_log(SCOUT_LOG_DEBUG, "service", "%s: watching source %s at %s",
              s->name, src->key, src->path);
    return src;
}

/* The watched source for d: same key, path and names whose data is read
 * (a child's need for data is settled when it is first listed, so other
 * names mean a new watch). */
/* A watch may be dropped from inside its own on_update (the batch it just
 * delivered moved the sources): retiring it there would free it under its
 * caller, so it is retired on the next loop iteration. */
static void
on_reap(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_service_t *s = t->data;
    scout_service_timers_t *tm = s->timers;
    (void)loop;
    (void)revents;

    for (int i = 0; i < tm->ndropped; i++)
        source_free(tm->dropped[i], 1);
    free(tm->dropped);
    tm->dropped = NULL;
    tm->ndropped = 0;
}

static void
drop_later(scout_service_t *s, scout_source_t *src)
{
    scout_service_timers_t *t = scout_service_timers(s);
    scout_source_t **d = t == NULL ? NULL
        : realloc(t->dropped, (size_t)(t->ndropped + 1) * sizeof(*d));

    if (d == NULL) {            /* leaks the shell, never frees it early */
        scout_log(SCOUT_LOG_ERROR, "service", "%s: out of memory retiring "
                  "source %s", s->name, src->key);
        return;
    }
    t->dropped = d;
    t->dropped[t->ndropped++] = src;
    if (ev_cb(&t->reap) == NULL) {      /* once: it may be pending */
        ev_init(&t->reap, on_reap);
        t->reap.data = s;
    }
    if (!ev_is_active(&t->reap)) {
        ev_timer_set(&t->reap, 0., 0.);
        ev_timer_start(s->loop, &t->reap);
    }
}

static scout_source_t *
find_source(scout_service_t *s, scout_source_conf_t *d)
{
    if (d->ndata > 1)
        qsort(d->data, (size_t)d->ndata, sizeof(char *), cmp_str);
    for (int i = 0; i < s->nsources; i++) {
        scout_source_t *src = s->sources[i];
        int same = strcmp(src->key, d->key) == 0
                   && strcmp(src->path, d->path) == 0
                   && src->ndata == d->ndata;

        for (int k = 0; same && k < d->ndata; k++)
            same = strcmp(src->data[k], d->data[k]) == 0;
        if (same)
            return src;
    }
    return NULL;
}

static int
is_watched(scout_service_t *s, scout_source_t *src)
{
    for (int i = 0; i < s->nsources; i++)
        if (s->sources[i] == src)
            return 1;
    return 0;
}

/* Make the watched sources the ones the policy wants now. */
int
scout_service_sources_sync(scout_service_t *s, char *err)
{
    scout_source_conf_t *want = NULL;
    scout_source_t **next = NULL;
    int nwant = 0, n = 0, rc = SCOUT_ERROR, drop_err;
    char derr[SCOUT_ERR_LEN];

    if (s->has_sources
        && scout_policy_sources(s->policy, s->idx, &want, &nwant, err)
           != SCOUT_OK)
        return SCOUT_ERROR;
    if (nwant > 0 && (next = calloc((size_t)nwant, sizeof(*next))) == NULL) {
        scout_seterr(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < nwant; i++) {
        scout_source_t *src = find_source(s, &want[i]);

        if (src == NULL) {
            if ((src = source_new(s, &want[i], err)) == NULL)
                goto done;
            /* the same source with other names to read: its counter of
             * refused rules goes on (a counter never goes back) */
            for (int k = 0; k < s->nsources; k++)
                if (strcmp(s->sources[k]->key, src->key) == 0)
                    src->invalid = s->sources[k]->invalid;
        }
        next[n++] = src;
    }
    /* the ones no longer wanted: retired, and the policy forgets them */
    for (int i = 0; i < s->nsources; i++) {
        int kept = 0;

        for (int k = 0; k < n && !kept; k++)
            kept = next[k] == s->sources[i];
        if (kept)
            continue;
        scout_log(SCOUT_LOG_INFO, "service", "%s: source %s (%s) is no "
                  "longer wanted; its watch is retired", s->name,
                  s->sources[i]->key, s->sources[i]->path);
        if (scout_policy_source_update(s->policy, s->idx, s->sources[i]->key,
                                       NULL, &drop_err, derr) != SCOUT_OK)
            scout_log(SCOUT_LOG_WARN, "service", "%s: dropping source %s: "
                      "%s", s->name, s->sources[i]->key, derr);
        s->rules_changed = 1;
        drop_later(s, s->sources[i]);
    }
    free(s->sources);
    s->sources = next;
    s->nsources = n;
    next = NULL;
    rc = SCOUT_OK;

done:
    if (next != NULL) {         /* new ones made before a failure go */
        for (int k = 0; k < n; k++)     /* (their first reads may be out) */
            if (!is_watched(s, next[k]))
                source_free(next[k], 1);
        free(next);
    }
    scout_source_conf_free(want, nwant);
    return rc;
}

void
scout_service_sources_free(scout_service_t *s, int retire)
{
    scout_service_timers_t *t = s->timers;

    if (t != NULL) {
        if (s->loop != NULL)
            ev_timer_stop(s->loop, &t->reap);
        for (int i = 0; i < t->ndropped; i++)
            source_free(t->dropped[i], retire);
        free(t->dropped);
        t->dropped = NULL;
        t->ndropped = 0;
    }
    for (int i = 0; i < s->nsources; i++)
        source_free(s->sources[i], retire);
    free(s->sources);
    s->sources = NULL;
    s->nsources = 0;
}

void
scout_service_sources_rebind(scout_service_t *s)
{
    char err[SCOUT_ERR_LEN];

    if (scout_service_sources_sync(s, err) != SCOUT_OK)
        scout_log(SCOUT_LOG_WARN, "service", "%s: sources: %s", s->name,
                  err);
    for (int i = 0; i < s->nsources; i++)
        scout_cache_mark_all_pending(scout_watch_cache(s->sources[i]->watch));
}

static int
all_seen(const scout_service_t *s)
{
    if (!s->primary_seen)
        return 0;
    for (int i = 0; i < s->nsources; i++)
        if (!s->sources[i]->seen)
            return 0;
    return 1;
}

/* Deliver a settled source's pending batch; SCOUT_ERROR: the policy failed
 * (the batch stays pending, the service's retry delivers it again). */
static int
deliver(scout_service_t *s, scout_source_t *src)
{
    scout_cache_t *c = scout_watch_cache(src->watch);
    char err[SCOUT_ERR_LEN];
    int invalid;

    if (scout_policy_source_update(s->policy, s->idx, src->key, c, &invalid,
                                   err) != SCOUT_OK) {
        s->stats.hook_errors++;
        scout_log(SCOUT_LOG_WARN, "service", "%s: source %s: the policy "
                  "failed, its rules stay as they were: %s", s->name,
                  src->key, err);
        return SCOUT_ERROR;
    }
    scout_cache_commit(c);
    src->invalid += (uint64_t)invalid;
    s->rules_changed = 1;
    return SCOUT_OK;
}

/* Something changed on one of the service's paths: every settled source's
 * batch goes to the policy, then the list is judged again. */
void
scout_service_refresh(scout_service_t *s)
{
    char err[SCOUT_ERR_LEN];
    int delivered = 0, failed = 0;

    if (!all_seen(s))
        return;                 /* synced only once every path was read */
    for (int i = 0; i < s->nsources; i++) {
        scout_source_t *src = s->sources[i];
        scout_cache_t *c = scout_watch_cache(src->watch);

        if (!scout_watch_settled(src->watch) || !scout_cache_has_pending(c))
            continue;
        if (deliver(s, src) == SCOUT_OK)
            delivered = 1;
        else
            failed = 1;
    }
    if (delivered) {
        /* the policy may want other sources now (dubbo 3's mapping) */
        if (scout_service_sources_sync(s, err) != SCOUT_OK)
            scout_log(SCOUT_LOG_WARN, "service", "%s: sources: %s", s->name,
                      err);
        if (!all_seen(s))
            return;             /* a new source is read first */
    }
    if (!scout_watch_settled(s->watch))
        scout_watch_notify(s->watch);   /* judged when its reads settle */
    else
        scout_service_judge(s);
    if (failed && !scout_service_retry_armed(s)) {
        /* the failed batch is delivered again, backing off */
        scout_service_retry_arm(s, s->retry_s);
        if (s->retry_s < 30.0)
            s->retry_s *= 2;
    }
}

unsigned
scout_service_sources_children(const scout_service_t *s)
{
    unsigned n = 0;

    for (int i = 0; i < s->nsources; i++)
        n += scout_watch_cache(s->sources[i]->watch)->count;
    return n;
}

int
scout_service_nsources(const scout_service_t *s)
{
    return s->nsources;
}

const char *
scout_service_source_key(const scout_service_t *s, int k)
{
    return s->sources[k]->key;
}

uint64_t
scout_service_source_invalid(const scout_service_t *s, int k)
{
    return s->sources[k]->invalid;
}
