/*
 * service.c -- from a consistent cache to a published list.
 *
 * The watch calls on_update when its reads have settled; the pending
 * changes go to the policy, and only an accepted result is published and
 * committed to the cache.  Nothing here talks to ZooKeeper directly.
 */
#include "service_int.h"
#include "rcbuf.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scout.h"
#include "zk/watch.h"


/* A codec whose answer depends on the name is asked per list, in slices so
 * that one call into Lua stays short whatever the list's size. */
#define NEEDS_DATA_SLICE 1024

static void
needs_data_cb(void *ud, const char *const *names, unsigned n,
              unsigned char *need)
{
    scout_service_t *s = ud;

    if (s->needs_data >= 0) {
        memset(need, s->needs_data ? 1 : 0, n);
        return;
    }
    if (s->needs_data == SCOUT_NEEDS_DATA_UNLESS_HOSTPORT) {
        for (unsigned k = 0; k < n; k++)
            need[k] = !scout_endpoint_is_hostport(names[k]);
        return;
    }
    for (unsigned k = 0; k < n; k += NEEDS_DATA_SLICE)
        scout_policy_needs_data(s->policy, s->idx, names + k,
                                n - k < NEEDS_DATA_SLICE ? n - k
                                                         : NEEDS_DATA_SLICE,
                                need + k);
}

int
scout_service_delay(void *ud, const scout_event_t *ev)
{
    scout_service_t *s = ud;

    if (s->delay_ms >= 0)
        return s->delay_ms;
    s->last_delay = scout_policy_delay(s->policy, s->idx, ev, s->last_delay);
    return s->last_delay;
}

/* The policy's view changed (or may have): the next explain asks again. */
static void
explain_drop(scout_service_t *s)
{
    scout_rcbuf_unref(s->explain);    /* clients still sending keep theirs */
    s->explain = NULL;
}

/* The ids an update put into or deleted from the set, while its publish's
 * on_publish runs (one thread; the service struct has no room left for
 * them: test_footprint).  The put ones are copied before the put, since a
 * put endpoint is the set's and may be freed by a later one of the same
 * id; past the room, "too many" (the reader compares every endpoint). */
#define CHANGED_BYTES 2048
typedef struct {
    const scout_service_t *svc;
    const scout_update_t  *up;      /* its gone ids */
    uint32_t               len;
    int                    over;
    char                   ids[CHANGED_BYTES];  /* the put ones */
} changed_t;
static const changed_t *publishing;

static void
changed_put(changed_t *ch, const char *id)
{
    size_t need = strlen(id) + 1;

    if (need > CHANGED_BYTES - ch->len) {
        ch->over = 1;
        return;
    }
    memcpy(ch->ids + ch->len, id, need);
    ch->len += (uint32_t)need;
}

static void
publish(scout_service_t *s)
{
    scout_cache_t *c = scout_watch_cache(s->watch);
    uint64_t zx = (uint64_t)(c->pzxid > c->max_mzxid ? c->pzxid
                                                       : c->max_mzxid);

    s->published = 1;
    s->index = zx > s->index ? zx : s->index + 1;
    if (!s->list_kept) {            /* the old index's answer: clients */
        scout_rcbuf_unref(s->list); /* still sending keep their ref;   */
        s->list = NULL;             /* a blocking query's is the next  */
    }                               /* list's base (list_index tells)  */
    s->stats.publishes++;
    scout_log(SCOUT_LOG_DEBUG, "service", "%s: published %u endpoints "
              "(index %llu)", s->name, s->eps.n,
              (unsigned long long)s->index);
    if (s->on_publish != NULL)
        s->on_publish(s->on_publish_ud, s);
}

/* The rules of the sources changed: so may the route rules that shm readers
 * apply (dubbo's routers), even when no endpoint did.  1 when they differ
 * from what was last published. */
static int
settings_moved(scout_service_t *s)
{
    char *old = s->settings;
    const char *now;
    size_t len;
    int moved;

    s->settings = NULL;
    now = scout_service_settings(s, &len);
    moved = old == NULL || strcmp(old, now) != 0;
    free(old);
    return moved;
}

static void
on_update(void *ud)
{
    scout_service_t *s = ud;

    s->primary_seen = 1;
    scout_service_refresh(s);
}

static void judge(scout_service_t *s);

/* A judgement may change the state without publishing (protection holds a
 * drop, a filter starts failing): readers of the state (the shm snapshot,
 * the disk snapshot) hear of it, since they re-encode only who told them. */
void
scout_service_judge(scout_service_t *s)
{
    const char *before = scout_service_state(s);
    uint64_t publishes = s->stats.publishes;

    judge(s);
    if (s->stats.publishes == publishes && s->on_state != NULL
        && strcmp(before, scout_service_state(s)) != 0)
        s->on_state(s->on_publish_ud, s);
}

static void
judge(scout_service_t *s)
{
    scout_cache_t *c = scout_watch_cache(s->watch);
    scout_update_t up;
    changed_t ch;
    char err[SCOUT_ERR_LEN];
    double after, t0;
    int rc, force = 0;

    /* a new policy judging part of the list would take the rest for gone:
     * the refetch's last read calls again */
    if (scout_cache_refetching(c))
        return;
    /* The whole update failed (its budget, an error outside the filter's
     * own protection): a change of the service does not run it again at
     * full cost, the retry timer does (1 s, doubling to 30 s, and at least
     * 10 times what the failure held the loop), or a reload.
     * The changes stay pending meanwhile, and the last good list stands. */
    if (s->backing_off) {
        s->stats.hook_backoffs++;
        return;
    }
    scout_service_seed_policy(s);
    explain_drop(s);            /* the policy is about to learn more */
    /* a source's rules changed: every child is judged again (dubbo's
     * configurators on 5,000 providers take ~60 ms), and the budget says so */
    t0 = scout_now_ms();
    rc = scout_policy_update(s->policy, s->idx, c,
                             s->rules_changed ? c->count + scout_service_sources_children(s)
                                              : 0,
                             &up, err);
    if (rc == SCOUT_AGAIN) {
        /* protection holds the drop: the last list stands, the changes stay
         * pending, and a re-read confirms (or undoes) the drop */
        if (!s->protected)
            s->stats.protections++;
        s->protected = 1;
        scout_watch_reread(s->watch, up.retry_ms);
        return;
    }
    if (rc != SCOUT_OK) {
        char why[SCOUT_ERR_LEN + 96];
        /* never sooner than 10 times what the failed call held the loop:
         * a loaded host stretches a budget's CPU into seconds of wall
         * clock, and retried every second it would hold the loop most of
         * the time (the runtime backs a failed child off likewise) */
        double wait = (scout_now_ms() - t0) * 10 / 1000;

        if (wait < s->retry_s)
            wait = s->retry_s;
        s->stats.hook_errors++;
        free(s->last_error);
        /* /v1/health and /v1/services say until when the list stays */
        snprintf(why, sizeof(why), "%s (the policy is asked again in %.0f s, "
                 "or after a reload; changes wait)", err, wait);
        s->last_error = strdup(why);
        scout_log(SCOUT_LOG_WARN, "service", "%s: policy failed, keeping "
                  "the last good list (%u endpoints); retrying in %.0f s "
                  "(changes until then wait for it): %s",
                  s->name, s->eps.n, wait, err);
        s->backing_off = 1;
        /* Deliver the same changes again later even if ZooKeeper stays
         * quiet: the hook may depend on something that recovers. */
        scout_service_retry_arm(s, wait);
        if (s->retry_s < 30.0)
            s->retry_s *= 2;
        return;
    }
    if (s->timers != NULL)
        ev_timer_stop(s->loop, &s->timers->retry);
    after = 0;
    s->stats.hook_backoffs += (uint64_t)up.spared;
    if (up.degraded != NULL && up.reweigh_ms <= 0) {
        /* children held by failing data are read again, backing off: what
         * they depend on may recover without any event (a failed filter's
         * own back-off comes from the runtime, as reweigh_ms) */
        after = s->retry_s;
        if (s->retry_s < 30.0)
            s->retry_s *= 2;
    } else if (up.degraded == NULL) {
        s->retry_s = 1.0;
    }
    /* a warm-up ramp moves on without events */
    if (up.reweigh_ms > 0 && (after == 0 || up.reweigh_ms / 1000.0 < after))
        after = up.reweigh_ms / 1000.0;
    if (after > 0)
        scout_service_retry_arm(s, after);
    s->from_snapshot = 0;       /* ZooKeeper's own listing now stands */
    s->fresh_at = ev_now(s->loop);
    scout_cache_commit(c);
    s->protected = 0;
    free(s->last_error);
    s->last_error = NULL;
    s->stats.decode_errors += (uint64_t)up.decode_errors;
    s->stats.hook_errors += (uint64_t)up.hook_errors;
    s->stats.rejected += (uint64_t)up.rejected;
    scout_stats.hook_errors += (uint64_t)up.hook_errors;
    if (up.degraded != NULL && s->degraded == NULL)
        scout_log(SCOUT_LOG_WARN, "service", "%s: degraded: %s", s->name,
                  up.degraded);
    else if (up.degraded == NULL && s->degraded != NULL)
        scout_log(SCOUT_LOG_INFO, "service", "%s: no longer degraded: every "
                  "child is as ZooKeeper has it", s->name);
    free(s->degraded);
    s->degraded = up.degraded;  /* moved */
    up.degraded = NULL;
    for (int i = 0; i < up.ngone; i++)
        scout_epset_del(&s->eps, up.gone[i]);
    ch.svc = s;
    ch.up = &up;
    ch.len = 0;
    ch.over = 0;
    for (int i = 0; i < up.nup; i++) {
        changed_put(&ch, up.up[i]->id);
        if (scout_epset_put(&s->eps, up.up[i]) != SCOUT_OK)
            scout_log(SCOUT_LOG_WARN, "service", "%s: out of memory: "
                      "endpoint not published", s->name);
        up.up[i] = NULL;                /* owned (or freed) by the set */
    }
    if (s->rules_changed) {
        s->rules_changed = 0;
        if (settings_moved(s) && s->published)
            force = 1;
    }
    if (up.nup > 0 || up.ngone > 0 || !s->published || force) {
        const changed_t *outer = publishing;    /* (a nested publish) */

        publishing = &ch;       /* its ids: scout_service_changed_ids */
        publish(s);
        publishing = outer;
    }
    scout_update_clear(&up);
    /* the sources may follow the list (dubbo's tag rules are keyed by the
     * providers' application) */
    if (s->has_sources && scout_service_sources_sync(s, err) != SCOUT_OK)
        scout_log(SCOUT_LOG_WARN, "service", "%s: sources: %s", s->name,
                  err);
}

static void
on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_service_t *s = t->data;
    (void)loop;
    (void)revents;

    /* the update runs again (reads in flight end in on_update anyway) */
    s->backing_off = 0;
    if (scout_watch_settled(s->watch))
        scout_service_refresh(s);
}

scout_service_timers_t *
scout_service_timers(scout_service_t *s)
{
    if (s->timers != NULL)
        return s->timers;
    if ((s->timers = calloc(1, sizeof(*s->timers))) == NULL) {
        scout_log(SCOUT_LOG_ERROR, "service", "%s: out of memory for its "
                  "timers", s->name);
        return NULL;
    }
    ev_init(&s->timers->retry, on_retry);
    s->timers->retry.data = s;
    return s->timers;
}

void
scout_service_retry_arm(scout_service_t *s, double after)
{
    scout_service_timers_t *t = scout_service_timers(s);

    if (t == NULL)
        return;
    ev_timer_stop(s->loop, &t->retry);
    ev_timer_set(&t->retry, after, 0.);
    ev_timer_start(s->loop, &t->retry);
}

int
scout_service_retry_armed(const scout_service_t *s)
{
    return s->timers != NULL && ev_is_active(&s->timers->retry);
}

static const scout_watch_cb_t watch_cb = {
    needs_data_cb, scout_service_delay, on_update
};

scout_service_t *
scout_service_new(struct ev_loop *loop, scout_session_t *session,
                  scout_policy_t *policy, int idx,
                  const scout_service_conf_t *conf, char *err)
{
    size_t nlen = strlen(conf->name);
    scout_service_t *s = calloc(1, offsetof(scout_service_t, name) + nlen + 1);

    if (s == NULL)
        goto oom;
    memcpy(s->name, conf->name, nlen + 1);
    s->idx = idx;
    s->needs_data = conf->needs_data;
    s->delay_ms = conf->delay_ms;
    s->session = session;
    s->policy = policy;
    s->loop = loop;
    s->retry_s = 1.0;
    scout_epset_init(&s->eps);
    s->watch = scout_watch_new(loop, session, conf->path, &watch_cb, s,
                               &s->stats, err);
    if (s->watch == NULL)
        goto fail;
    s->path = scout_watch_path(s->watch);
    scout_watch_set_anti_entropy(s->watch, conf->anti_entropy_ms);
    s->has_sources = conf->has_sources != 0;
    s->anti_entropy_ms = conf->anti_entropy_ms;
    if (s->has_sources && scout_service_sources_sync(s, err) != SCOUT_OK)
        goto fail;
    /* bound last, once nothing can fail: a service that failed is never
     * bound.  Out of memory here only keeps the runtime's tables. */
    (void)scout_policy_bind(policy, idx, &s->eps);
    return s;

oom:
    snprintf(err, SCOUT_ERR_LEN, "out of memory");
fail:
    scout_service_free(s);
    return NULL;
}

int
scout_service_rebind(scout_service_t *s, scout_policy_t *policy, int idx,
                     const scout_service_conf_t *conf, char *err)
{
    int refetch;

    if (scout_policy_seed(policy, idx, &s->eps, err) != SCOUT_OK)
        return SCOUT_ERROR;
    s->policy_unseeded = 0;     /* the new VM has it all */
    s->backing_off = 0;         /* a new policy is asked at once */
    s->retry_s = 1.0;
    explain_drop(s);
    (void)scout_policy_bind(policy, idx, &s->eps);
    s->policy = policy;
    s->idx = idx;
    s->needs_data = conf->needs_data;
    s->delay_ms = conf->delay_ms;
    s->last_delay = 0;
    scout_watch_set_anti_entropy(s->watch, conf->anti_entropy_ms);
    s->anti_entropy_ms = conf->anti_entropy_ms;
    free(s->settings);
    s->settings = NULL;
    /* every child goes through the new codec, filter and protection; only
     * what really differs gets published (data the cache let go of is read
     * again first: on_update waits for it) */
    refetch = scout_cache_mark_all_pending(scout_watch_cache(s->watch)) > 0;
    /* the new VM learns every source's nodes again (and the sources it
     * wants may differ) */
    s->has_sources = conf->has_sources != 0;
    scout_service_sources_rebind(s);
    if (refetch)
        scout_watch_reread(s->watch, 0);
    else if (scout_watch_settled(s->watch))
        scout_service_refresh(s);
    return SCOUT_OK;
}

void
scout_service_retire(scout_service_t *s)
{
    if (s->watch != NULL)
        scout_watch_retire(s->watch);
    s->watch = NULL;
    scout_service_sources_free(s, 1);
    scout_service_free(s);
}

void
scout_service_free(scout_service_t *s)
{
    if (s == NULL)
        return;
    if (s->loop != NULL && s->timers != NULL)
        ev_timer_stop(s->loop, &s->timers->retry);
    scout_watch_free(s->watch);
    scout_service_sources_free(s, 0);
    free(s->timers);
    scout_epset_free(&s->eps);
    free(s->settings);
    scout_rcbuf_unref(s->explain);
    scout_rcbuf_unref(s->list);
    free(s->last_error);
    free(s->degraded);
    free(s);
}

void
scout_service_on_publish(scout_service_t *s, scout_service_publish_fn fn,
                         void *ud)
{
    s->on_publish = fn;
    s->on_publish_ud = ud;
}

void
scout_service_on_state(scout_service_t *s, scout_service_publish_fn fn)
{
    s->on_state = fn;
}

void
scout_service_on_session(scout_service_t *s, scout_session_state_t st,
                         int new_session, int jitter_ms)
{
    /* the moment the connection goes, the clock of staleness starts (only
     * once: later transitions while disconnected keep the first moment) */
    if (st != SCOUT_SESSION_CONNECTED && s->published && !s->from_snapshot
        && !s->disconnected) {
        s->fresh_at = ev_now(s->loop);
        s->disconnected = 1;
    } else if (st == SCOUT_SESSION_CONNECTED) {
        s->disconnected = 0;
    }
    scout_watch_on_session(s->watch, st, new_session, jitter_ms);
    for (int i = 0; i < s->nsources; i++)
        scout_watch_on_session(s->sources[i]->watch, st, new_session,
                               jitter_ms);
}

const char *
scout_service_name(const scout_service_t *s)
{
    return s->name;
}

int
scout_service_by_name(const void *a, const void *b)
{
    return strcmp((*(scout_service_t *const *)a)->name,
                  (*(scout_service_t *const *)b)->name);
}

const char *
scout_service_path(const scout_service_t *s)
{
    return s->path;
}

unsigned
scout_service_count(const scout_service_t *s)
{
    return s->eps.n;
}

/* One copy per index: every client of this index shares it, and it is the
 * only one (the set renders it and lets go; publish() drops it, so a list
 * nobody asks for again is not held). */
scout_rcbuf_t *
scout_service_json(scout_service_t *s, int keep)
{
    char *json;
    size_t len;

    if (s->list != NULL && s->list_index == s->index)
        return s->list;
    if (keep && s->list != NULL && s->list_kept)
        json = scout_epset_json_take_after(&s->eps, s->list->data,
                                           s->list->len, &len);
    else
        json = keep ? scout_epset_json_take(&s->eps, &len)
                    : scout_epset_json_take_once(&s->eps, &len);
    if (json == NULL)
        return NULL;
    scout_stats.api_list_encodings++;
    scout_rcbuf_unref(s->list);
    if ((s->list = scout_rcbuf_adopt(json, len)) != NULL)
        s->list_index = s->index;
    s->list_kept = keep && s->list != NULL;
    return s->list;
}

uint64_t
scout_service_index(const scout_service_t *s)
{
    return s->index;
}

scout_session_t *
scout_service_session(const scout_service_t *s)
{
    return s->session;
}

int
scout_service_protected(const scout_service_t *s)
{
    return s->protected;
}

int
scout_service_synced(const scout_service_t *s)
{
    /* a list from the disk snapshot is served, but not yet confirmed; a
     * degraded one is not what ZooKeeper holds */
    return s->published && !s->from_snapshot && !scout_service_degraded(s);
}

int
scout_service_degraded(const scout_service_t *s)
{
    return s->last_error != NULL || s->degraded != NULL;
}

int
scout_service_serving(const scout_service_t *s)
{
    return s->published;
}

int
scout_service_settled(const scout_service_t *s)
{
    return s->published || s->last_error != NULL;
}

const char *
scout_service_state(const scout_service_t *s)
{
    if (!s->published)
        return "syncing";
    if (scout_session_state(s->session) != SCOUT_SESSION_CONNECTED)
        return "stale";
    if (s->from_snapshot)
        return s->protected ? "protected" : "stale";
    if (s->protected)
        return "protected";
    if (scout_service_degraded(s))
        return "degraded";
    return "synced";
}

/* The policy's Lua side learns a snapshot's list only when it first needs
 * it (an update, explain, pick, render): a cold start with 10,000 services
 * serves the snapshot without building 100k Lua tables first, and most of
 * them are built anyway when ZooKeeper's first listing arrives. */
void
scout_service_seed_policy(scout_service_t *s)
{
    char err[SCOUT_ERR_LEN];

    if (!s->policy_unseeded)
        return;
    s->policy_unseeded = 0;
    explain_drop(s);
    if (scout_policy_seed(s->policy, s->idx, &s->eps, err) != SCOUT_OK)
        scout_log(SCOUT_LOG_WARN, "service", "%s: the policy could not "
                  "take the snapshot's list (%s): ZooKeeper's first listing "
                  "is judged as all new", s->name, err);
}

void
scout_service_seed(scout_service_t *s, scout_epset_t *eps, uint64_t index,
                   int64_t pzxid, int64_t max_mzxid, unsigned rejected)
{
    s->stats.rejected += rejected;
    scout_epset_free(&s->eps);
    s->eps = *eps;              /* moved: the caller's set is now empty */
    scout_epset_init(eps);
    s->index = index;
    s->published = 1;
    s->from_snapshot = 1;
    s->policy_unseeded = 1;
    explain_drop(s);
    scout_rcbuf_unref(s->list);
    s->list = NULL;
    scout_watch_set_floor(s->watch, pzxid, max_mzxid);
}

const scout_epset_t *
scout_service_epset(const scout_service_t *s)
{
    return &s->eps;
}

int
scout_service_changed_ids(const scout_service_t *s,
                          void (*fn)(void *ud, const char *id), void *ud)
{
    const changed_t *ch = publishing;

    if (ch == NULL || ch->svc != s || ch->over)
        return 0;
    for (int i = 0; i < ch->up->ngone; i++)
        fn(ud, ch->up->gone[i]);
    for (uint32_t at = 0; at < ch->len; at += strlen(ch->ids + at) + 1)
        fn(ud, ch->ids + at);
    return 1;
}

/* Asked of the policy only when an shm snapshot is published: at 10,000
 * services that is 10,000 Lua calls a start without shm need not pay. */
const char *
scout_service_settings(scout_service_t *s, size_t *len)
{
    if (s->settings == NULL) {
        s->settings = scout_policy_settings(s->policy, s->idx);
        if (s->settings == NULL)    /* logged once; readers use defaults */
            s->settings = strdup("");
    }
    *len = s->settings ? strlen(s->settings) : 0;
    return s->settings ? s->settings : "";
}

/* At 5,000 children one answer costs the loop ~130 ms: built once per
 * state of the policy's view, not once per request. */
scout_rcbuf_t *
scout_service_explain(scout_service_t *s, char *err)
{
    char *text;

    scout_service_seed_policy(s);
    if (s->explain == NULL) {
        if ((text = scout_policy_explain(s->policy, s->idx, err)) == NULL)
            return NULL;
        if ((s->explain = scout_rcbuf_adopt(text, strlen(text))) == NULL) {
            scout_seterr(err, "out of memory");
            return NULL;
        }
    }
    return s->explain;
}

char *
scout_service_pick(scout_service_t *s, const char *query, char *err)
{
    scout_service_seed_policy(s);
    return scout_policy_pick(s->policy, s->idx, query, err);
}

int
scout_service_from_snapshot(const scout_service_t *s)
{
    return s->from_snapshot;
}

void
scout_service_zxids(const scout_service_t *s, int64_t *pzxid,
                    int64_t *max_mzxid)
{
    scout_cache_t *c = scout_watch_cache(s->watch);

    *pzxid = c->pzxid;
    *max_mzxid = c->max_mzxid;
}

double
scout_service_staleness(const scout_service_t *s)
{
    if (!s->published)
        return 0;
    if (strcmp(scout_service_state(s), "synced") == 0
        || strcmp(scout_service_state(s), "protected") == 0
        || strcmp(scout_service_state(s), "degraded") == 0)
        return 0;
    return s->fresh_at > 0 ? ev_now(s->loop) - s->fresh_at : 0;
}

int
scout_service_idx(const scout_service_t *s)
{
    return s->idx;
}

const char *
scout_service_last_error(const scout_service_t *s)
{
    if (s->last_error != NULL)
        return s->last_error;
    return s->degraded ? s->degraded : "";
}

const scout_service_stats_t *
scout_service_stats(const scout_service_t *s)
{
    return &s->stats;
}
