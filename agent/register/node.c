/*
 * node.c -- what a registration has in ZooKeeper, reconciled with what it
 * wants: every change -- health, session, body, a completion -- calls
 * scout_reg_reconcile(), which issues at most one request chain at a time.
 * Creation creates the missing parents (persistent, pipelined: the server
 * applies a session's requests in order) and then the node.  NODEEXISTS
 * means a node from an earlier session, or from a session of ours the
 * server has not expired yet: its ephemeralOwner decides -- ours is
 * adopted, anything else is deleted and created again (dubbo's PR#5135
 * problem).  A new session forgets what it had.  A changed body is
 * rewritten in place (setData).  Nothing here blocks; completions copy
 * what they keep.
 *
 * The node we hold is watched (exists): deleted by anyone but us -- an
 * operator, a cleanup script -- it is created again while the registration
 * is up, logged and counted, as Curator's PersistentNode and Nerve do.
 */
#include "register/reg.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scout.h"
#include "stats.h"

req_t *
scout_reg_req_new(scout_reg_t *r, const char *path)
{
    size_t n = strlen(path) + 1;
    req_t *q = malloc(sizeof(*q) + n);

    if (q != NULL) {
        q->r = r;
        q->epoch = scout_session_epoch(r->session);
        q->body = NULL;
        q->body_len = 0;
        memcpy(q->path, path, n);
        r->refs++;
    }
    return q;
}

void
scout_reg_req_free(req_t *q)
{
    if (q == NULL)
        return;
    free(q->body);
    scout_reg_release(q->r);
    free(q);
}

int
scout_reg_orphan(req_t *q)
{
    if (!q->r->freed)
        return 0;
    scout_reg_req_free(q);
    return 1;
}

/* Remember what a create or set sends: the node holds that, whatever the
 * wanted body has become by the time the answer comes. */
int
scout_reg_req_body(req_t *q, const char *body, int len)
{
    if (q == NULL || (q->body = malloc((size_t)len + 1)) == NULL)
        return SCOUT_ERROR;
    memcpy(q->body, body, (size_t)len);
    q->body_len = len;
    return SCOUT_OK;
}

/* After sending (ok) a request chain is in flight; if not, q is ours to
 * free.  Returns ok. */
int
scout_reg_in_flight(scout_reg_t *r, req_t *q, int ok)
{
    if (!ok) {
        scout_reg_req_free(q);
        return 0;
    }
    r->busy = 1;
    scout_session_kick(r->session);
    return 1;
}

zhandle_t *
scout_reg_live_zh(scout_reg_t *r)
{
    if (scout_session_state(r->session) != SCOUT_SESSION_CONNECTED)
        return NULL;
    return scout_session_zh(r->session);
}

void
scout_reg_forget_node(scout_reg_t *r)
{
    free(r->node);
    free(r->data);
    r->node = NULL;
    r->data = NULL;
    r->data_len = 0;
}

void
scout_reg_retry_later(scout_reg_t *r, double seconds)
{
    ev_timer_stop(r->loop, &r->tick);
    ev_timer_set(&r->tick, seconds, 0.);
    ev_timer_start(r->loop, &r->tick);
}

/* Withdrawn once nothing is left in ZooKeeper: no node, no request chain,
 * and no create in doubt (its node would outlive us). */
void
scout_reg_finish_if_withdrawn(scout_reg_t *r)
{
    if (r->withdrawing && r->node == NULL && !r->busy && r->lost_body == NULL
        && r->done != NULL) {
        scout_reg_done_fn done = r->done;
        r->done = NULL;
        done(r->done_ud, r);
    }
}

/* ---- the node's own watch ------------------------------------------------ */

static scout_reg_t *live;

static void watch_node(scout_reg_t *r);

void
scout_reg_track(scout_reg_t *r, int on)
{
    scout_reg_t **pp;

    if (on) {
        r->next_live = live;
        live = r;
        return;
    }
    for (pp = &live; *pp != NULL; pp = &(*pp)->next_live) {
        if (*pp == r) {
            *pp = r->next_live;
            break;
        }
    }
}

/* Our node is gone and we did not delete it. */
static void
node_gone(scout_reg_t *r)
{
    free(r->gone);
    r->gone = r->node;          /* named in the log once it is back */
    r->node = NULL;
    scout_reg_forget_node(r);
    if (!r->healthy || r->withdrawing) {
        free(r->gone);          /* not wanted anyway: nothing to bring back */
        r->gone = NULL;
    }
    scout_reg_reconcile(r);
    scout_reg_finish_if_withdrawn(r);     /* last: done() may free r */
}

static void
node_event(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
    scout_reg_t *r;
    (void)zh;
    (void)state;

    if (type == ZOO_SESSION_EVENT)
        return;
    for (r = live; r != NULL; r = r->next_live)
        if (r->session == ctx && r->node != NULL && strcmp(r->node, path) == 0)
            break;
    if (r == NULL)
        return;                 /* not ours any more */
    if (type != ZOO_DELETED_EVENT)
        watch_node(r);  /* our own setData: watch on */
    else if (!r->deleting)      /* our own delete is answered after this */
        node_gone(r);
}

static void
node_exists_done(int rc, const struct Stat *stat, const void *data)
{
    req_t *q = (req_t *)data;
    scout_reg_t *r = q->r;
    int gone;
    (void)stat;

    if (scout_reg_orphan(q))
        return;
    /* deleted before the watch was set */
    gone = rc == ZNONODE && r->node != NULL && strcmp(r->node, q->path) == 0
           && !r->deleting && q->epoch == scout_session_epoch(r->session);
    scout_reg_req_free(q);
    if (gone)
        node_gone(r);
}

static void
watch_node(scout_reg_t *r)
{
    zhandle_t *zh = scout_reg_live_zh(r);
    req_t *q;

    if (zh == NULL || r->node == NULL
        || (q = scout_reg_req_new(r, r->node)) == NULL)
        return;                 /* a reconnect re-sets the client's watches */
    if (zoo_awexists(zh, r->node, node_event, r->session, node_exists_done,
                     q) != ZOK)
        scout_reg_req_free(q);
}

/* Created (or adopted) the node we hold now: watch it, and say so if it
 * replaces one another client deleted. */
void
scout_reg_held(scout_reg_t *r)
{
    if (r->gone != NULL) {
        scout_stats.registrations_recreated++;
        scout_log(SCOUT_LOG_WARN, "register", "%s: node %s deleted by "
                  "another client; re-created%s%s", r->name, r->gone,
                  strcmp(r->gone, r->node) == 0 ? "" : " as ",
                  strcmp(r->gone, r->node) == 0 ? "" : r->node);
        free(r->gone);
        r->gone = NULL;
    }
    watch_node(r);
}

/* ---- the request chains -------------------------------------------------- */

static void
parent_done(int rc, const char *value, const void *data)
{
    req_t *q = (req_t *)data;      /* parent creates: NODEEXISTS is fine */
    (void)rc;
    (void)value;
    scout_reg_req_free(q);
}

static void
deleted_done(int rc, const void *data)
{
    req_t *q = (req_t *)data;
    scout_reg_t *r = q->r;

    if (scout_reg_orphan(q))
        return;
    r->busy = 0;
    r->deleting = 0;
    if (rc == ZOK || rc == ZNONODE) {
        if (r->node != NULL && strcmp(r->node, q->path) == 0)
            scout_reg_forget_node(r);
        scout_log(SCOUT_LOG_INFO, "register", "%s: %s removed", r->name,
                  q->path);
    } else if (rc != ZCLOSING) {
        scout_log(SCOUT_LOG_WARN, "register", "%s: deleting %s: %s", r->name,
                  q->path, zerror(rc));
        scout_reg_retry_later(r, 1.0);
    }
    scout_reg_req_free(q);
    if (rc != ZCLOSING)
        scout_reg_reconcile(r);
    scout_reg_finish_if_withdrawn(r);     /* last: done() may free r */
}

static void
delete_node(scout_reg_t *r, zhandle_t *zh)
{
    req_t *q = scout_reg_req_new(r, r->node);

    if (scout_reg_in_flight(r, q, q != NULL && zoo_adelete(zh, r->node, -1,
                                                deleted_done, q) == ZOK))
        r->deleting = 1;
}

/* NODEEXISTS: whose node is it? */
static void
owner_done(int rc, const struct Stat *stat, const void *data)
{
    req_t *q = (req_t *)data;
    scout_reg_t *r = q->r;
    zhandle_t *zh;

    if (scout_reg_orphan(q))
        return;
    r->busy = 0;
    if (rc == ZOK && (stat->ephemeralOwner == scout_session_id(r->session)
                      || (!r->ephemeral && stat->ephemeralOwner == 0))) {
        /* ours (a retried create that had succeeded, or our persistent
         * node from before a restart): adopt it; reconcile rewrites the
         * body if it differs */
        r->node = strdup(q->path);
        r->epoch = q->epoch;
        scout_log(SCOUT_LOG_INFO, "register", "%s: adopted %s", r->name,
                  q->path);
        if (r->node != NULL)
            scout_reg_held(r);
    } else if (rc == ZOK && (zh = scout_reg_live_zh(r)) != NULL) {
        req_t *d = scout_reg_req_new(r, q->path);
        scout_log(SCOUT_LOG_WARN, "register", "%s: %s belongs to session "
                  "0x%llx; replacing it", r->name, q->path,
                  (unsigned long long)stat->ephemeralOwner);
        scout_reg_in_flight(r, d, d != NULL
                                  && zoo_adelete(zh, q->path, stat->version,
                                                 deleted_done, d) == ZOK);
    }
    scout_reg_req_free(q);
    if (rc != ZCLOSING)
        scout_reg_reconcile(r);
    scout_reg_finish_if_withdrawn(r);     /* last: done() may free r */
}

static void
create_done(int rc, const char *value, const void *data)
{
    req_t *q = (req_t *)data;
    scout_reg_t *r = q->r;
    zhandle_t *zh;

    if (scout_reg_orphan(q))
        return;
    r->busy = 0;
    if (rc == ZOK && (r->node = strdup(value ? value : q->path)) != NULL) {
        r->data = q->body;      /* what the node holds: what we sent */
        r->data_len = q->body_len;
        q->body = NULL;
        r->epoch = q->epoch;
        scout_log(SCOUT_LOG_INFO, "register", "%s: registered %s", r->name,
                  r->node);
        scout_reg_held(r);
    } else if (rc == ZNODEEXISTS && (zh = scout_reg_live_zh(r)) != NULL) {
        req_t *o = scout_reg_req_new(r, q->path);
        scout_reg_in_flight(r, o, o != NULL
                                  && zoo_aexists(zh, q->path, 0, owner_done,
                                                 o) == ZOK);
    } else if ((rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT)
               && r->want_seq && r->ephemeral) {
        /* the server may have made it: look before creating another,
         * whatever we want by then (withdrawn, unhealthy: delete it) */
        free(r->lost_body);
        free(r->lost_path);
        r->lost_path = strdup(q->path);
        r->lost_body = r->lost_path != NULL ? q->body : NULL;
        r->lost_len = q->body_len;
        r->lost_epoch = q->epoch;
        if (r->lost_body != NULL)
            q->body = NULL;
        scout_log(SCOUT_LOG_INFO, "register", "%s: the answer to creating "
                  "%s was lost (%s); looking for it before creating again",
                  r->name, q->path, zerror(rc));
    } else if (rc != ZCLOSING && rc != ZSESSIONEXPIRED
               && rc != ZCONNECTIONLOSS && rc != ZOPERATIONTIMEOUT) {
        scout_log(SCOUT_LOG_WARN, "register", "%s: creating %s: %s", r->name,
                  q->path, zerror(rc));
        scout_reg_retry_later(r, 2.0);
    }
    scout_reg_req_free(q);
    if (rc != ZCLOSING && !r->busy)
        scout_reg_reconcile(r);
    scout_reg_finish_if_withdrawn(r);     /* last: done() may free r */
}

static void
set_done(int rc, const struct Stat *stat, const void *data)
{
    req_t *q = (req_t *)data;
    scout_reg_t *r = q->r;
    (void)stat;

    if (scout_reg_orphan(q))
        return;
    r->busy = 0;
    if (rc == ZNONODE && r->node != NULL && strcmp(r->node, q->path) == 0) {
        scout_reg_forget_node(r);   /* gone behind our back: create again */
    } else if (rc == ZOK && r->node != NULL) {
        free(r->data);          /* the node holds what this set sent */
        r->data = q->body;
        r->data_len = q->body_len;
        q->body = NULL;
    } else if (rc != ZOK && rc != ZCLOSING) {
        free(r->data);          /* unknown: write it again */
        r->data = NULL;
        r->data_len = 0;
        scout_reg_retry_later(r, 1.0);
    }
    scout_reg_req_free(q);
    if (rc != ZCLOSING)
        scout_reg_reconcile(r);
    scout_reg_finish_if_withdrawn(r);     /* last: done() may free r */
}

/* Issue creates for every missing ancestor of parent, in order. */
static void
create_parents(scout_reg_t *r, zhandle_t *zh)
{
    char *p = strdup(r->parent);

    if (p == NULL)
        return;
    for (char *s = strchr(p + 1, '/'); ; s = strchr(s + 1, '/')) {
        req_t *q;
        if (s != NULL)
            *s = '\0';
        q = scout_reg_req_new(r, p);
        if (q != NULL && zoo_acreate(zh, p, "", 0, r->acl, 0, parent_done,
                                     q) != ZOK)
            scout_reg_req_free(q);
        if (s == NULL)
            break;
        *s = '/';
    }
    free(p);
}

/* Is the node we have the one we want (parent and name; for a sequential
 * node the name is the prefix)? */
static int
node_matches(const scout_reg_t *r)
{
    size_t pl = strcmp(r->parent, "/") == 0 ? 0 : strlen(r->parent);
    const char *base = r->node + pl + 1;

    if (strncmp(r->node, r->parent, pl) != 0 || r->node[pl] != '/')
        return 0;
    if (r->want_seq)
        return strncmp(base, r->want_name, strlen(r->want_name)) == 0;
    return strcmp(base, r->want_name) == 0;
}

void
scout_reg_reconcile(scout_reg_t *r)
{
    zhandle_t *zh = scout_reg_live_zh(r);
    int want = r->healthy && !r->withdrawing;
    char path[4096];
    req_t *q;

    if (zh == NULL || r->busy)
        return;
    if (r->node != NULL && r->epoch != scout_session_epoch(r->session)
        && r->ephemeral)
        scout_reg_forget_node(r);   /* the session that owned it is gone */
    if (!want && r->node != NULL) {
        delete_node(r, zh);
        return;
    }
    /* A create in doubt is looked for before anything else, wanted or not:
     * found, it is adopted, and then kept or deleted like any node. */
    if (r->node == NULL && r->lost_body != NULL) {
        if (r->lost_epoch == scout_session_epoch(r->session)) {
            scout_reg_find_lost_create(r, zh);
            return;
        }
        scout_reg_forget_lost(r);   /* its session is gone, and the node */
    }
    if (!want || r->want_name == NULL)
        return;
    if (r->node != NULL && !node_matches(r)) {
        /* a reload changed where the node lives or what it is called
         * (parent, port, codec): the old one goes, the new one follows */
        delete_node(r, zh);
        return;
    }
    if (r->node == NULL) {
        int flags = (r->ephemeral ? ZOO_EPHEMERAL : 0)
                    | (r->want_seq ? ZOO_SEQUENCE : 0);
        snprintf(path, sizeof(path), "%s/%s",
                 strcmp(r->parent, "/") == 0 ? "" : r->parent, r->want_name);
        create_parents(r, zh);
        q = scout_reg_req_new(r, path);
        scout_reg_in_flight(r, q, scout_reg_req_body(q, r->want_data,
                                                     r->want_len) == SCOUT_OK
                                  && zoo_acreate(zh, path, r->want_data,
                                                 r->want_len, r->acl, flags,
                                                 create_done, q) == ZOK);
        return;
    }
    if (r->data == NULL || r->data_len != r->want_len
        || memcmp(r->data, r->want_data, (size_t)r->want_len) != 0) {
        /* the body changed (weight, meta): rewrite in place; r->data
         * follows only once the server took it (set_done) */
        q = scout_reg_req_new(r, r->node);
        scout_reg_in_flight(r, q, scout_reg_req_body(q, r->want_data,
                                                     r->want_len) == SCOUT_OK
                                  && zoo_aset(zh, r->node, r->want_data,
                                              r->want_len, -1, set_done,
                                              q) == ZOK);
    }
}
