/*
 * register.c -- one registration: what it wants (healthy, the current body)
 * reconciled with what it has in ZooKeeper (a node path and its data).
 *
 * Every change -- health, session, body, a completion -- calls reconcile(),
 * which issues at most one request chain at a time.  Creation creates the
 * missing parents (persistent, pipelined: the server applies a session's
 * requests in order) and then the node.  NODEEXISTS means a node from an
 * earlier session, or from a session of ours the server has not expired
 * yet: its ephemeralOwner decides -- ours is adopted, anything else is
 * deleted and created again (dubbo's PR#5135 problem).  A new session
 * forgets what it had, and the current body is written, never the first
 * one (CURATOR-181).  The body is refreshed every interval and rewritten in
 * place (setData) when it changed.
 *
 * A sequential create whose answer is lost (the connection dropped after
 * the server took it) may have made a node we do not know of; creating
 * again would leave a second ephemeral node of ours, a phantom endpoint
 * for as long as the session lives (Curator's "protection mode" problem).
 * So before creating again the parent is listed, and a child with our
 * prefix, owned by our session and holding exactly the bytes of the lost
 * create is adopted (find_lost_create).  Only one create can be in doubt:
 * the next one is sent only once the look found nothing.
 */
#include "register/register.h"

#include <stdlib.h>
#include <string.h>

#include "register/check.h"
#include "log.h"
#include "scout.h"

struct scout_reg_s {
    struct ev_loop    *loop;
    scout_session_t   *session;
    scout_policy_t    *policy;
    int                idx;
    char              *name;
    char              *parent;
    int                ephemeral;
    struct ACL_vector *acl;
    ev_timer           tick;        /* body refresh, retries */
    scout_check_t     *check;       /* NULL: always healthy */
    scout_reg_conf_t   check_conf;  /* what it was built from (reloads) */
    int                healthy;
    int                withdrawing;
    scout_reg_done_fn  done;
    void              *done_ud;
    /* what we have */
    char              *node;        /* full path, NULL = none */
    char              *data;        /* what the node holds */
    int                data_len;
    /* what we want */
    char              *want_name;
    char              *want_data;
    int                want_len;
    int                want_seq;
    int                busy;        /* a request chain in flight */
    uint64_t           epoch;       /* session epoch of what we have */
    /* a sequential create whose answer was lost: its bytes and session */
    char              *lost_body;
    int                lost_len;
    uint64_t           lost_epoch;
    int                probing;     /* lost-create checks in flight */
    int                probe_failed;
};

static void reconcile(scout_reg_t *r);

/* ZOO_PERM_* are extern const ints, not constants: filled in at first use */
static struct ACL creator_read[2];
static struct ACL creator_only[1];
static struct ACL_vector acl_creator = { 2, creator_read };
static struct ACL_vector acl_private = { 1, creator_only };

static void
init_acls(void)
{
    static struct Id auth = { "auth", "" }, anyone = { "world", "anyone" };

    creator_read[0].perms = ZOO_PERM_ALL;
    creator_read[0].id = auth;
    creator_read[1].perms = ZOO_PERM_READ;
    creator_read[1].id = anyone;
    creator_only[0].perms = ZOO_PERM_ALL;
    creator_only[0].id = auth;
}

typedef struct {
    scout_reg_t *r;
    uint64_t     epoch;
    char        *body;          /* what a create or set sent */
    int          body_len;
    char         path[];
} req_t;

static req_t *
req_new(scout_reg_t *r, const char *path)
{
    size_t n = strlen(path) + 1;
    req_t *q = malloc(sizeof(*q) + n);

    if (q != NULL) {
        q->r = r;
        q->epoch = scout_session_epoch(r->session);
        q->body = NULL;
        q->body_len = 0;
        memcpy(q->path, path, n);
    }
    return q;
}

static void
req_free(req_t *q)
{
    if (q != NULL)
        free(q->body);
    free(q);
}

/* Remember what a create or set sends: the node holds that, whatever the
 * wanted body has become by the time the answer comes. */
static int
req_body(req_t *q, const char *body, int len)
{
    if (q == NULL || (q->body = malloc((size_t)len + 1)) == NULL)
        return SCOUT_ERROR;
    memcpy(q->body, body, (size_t)len);
    q->body_len = len;
    return SCOUT_OK;
}

/* After sending (ok) a request chain is in flight; if not, q is ours to
 * free.  Returns ok. */
static int
in_flight(scout_reg_t *r, req_t *q, int ok)
{
    if (!ok) {
        req_free(q);
        return 0;
    }
    r->busy = 1;
    scout_session_kick(r->session);
    return 1;
}

static zhandle_t *
live_zh(scout_reg_t *r)
{
    if (scout_session_state(r->session) != SCOUT_SESSION_CONNECTED)
        return NULL;
    return scout_session_zh(r->session);
}

static void
forget_node(scout_reg_t *r)
{
    free(r->node);
    free(r->data);
    r->node = NULL;
    r->data = NULL;
    r->data_len = 0;
}

static void
retry_later(scout_reg_t *r, double seconds)
{
    ev_timer_stop(r->loop, &r->tick);
    ev_timer_set(&r->tick, seconds, 0.);
    ev_timer_start(r->loop, &r->tick);
}

/* Ask the policy for the current body. */
static int
refresh_body(scout_reg_t *r)
{
    char *name = NULL, *data = NULL, err[SCOUT_ERR_LEN];
    int len = 0, seq = 0;

    if (r->policy == NULL)
        return SCOUT_ERROR;     /* withdrawn: its policy may be gone */
    if (scout_policy_register_body(r->policy, r->idx, &name, &data, &len,
                                   &seq, err) != SCOUT_OK) {
        scout_log(SCOUT_LOG_WARN, "register", "%s: %s; keeping the last "
                  "body", r->name, err);
        return SCOUT_ERROR;
    }
    free(r->want_name);
    free(r->want_data);
    r->want_name = name;
    r->want_data = data;
    r->want_len = len;
    r->want_seq = seq;
    return SCOUT_OK;
}

static void
finish_if_withdrawn(scout_reg_t *r)
{
    if (r->withdrawing && r->node == NULL && !r->busy && r->done != NULL) {
        scout_reg_done_fn done = r->done;
        r->done = NULL;
        done(r->done_ud, r);
    }
}

static void
parent_done(int rc, const char *value, const void *data)
{
    req_t *q = (req_t *)data;      /* parent creates: NODEEXISTS is fine */
    (void)rc;
    (void)value;
    req_free(q);
}

static void create_done(int rc, const char *value, const void *data);

static void
deleted_done(int rc, const void *data)
{
    req_t *q = (req_t *)data;
    scout_reg_t *r = q->r;

    r->busy = 0;
    if (rc == ZOK || rc == ZNONODE) {
        if (r->node != NULL && strcmp(r->node, q->path) == 0)
            forget_node(r);
        scout_log(SCOUT_LOG_INFO, "register", "%s: %s removed", r->name,
                  q->path);
    } else if (rc != ZCLOSING) {
        scout_log(SCOUT_LOG_WARN, "register", "%s: deleting %s: %s", r->name,
                  q->path, zerror(rc));
        retry_later(r, 1.0);
    }
    req_free(q);
    if (rc != ZCLOSING)
        reconcile(r);
    finish_if_withdrawn(r);     /* last: done() may free r */
}

/* NODEEXISTS: whose node is it? */
static void
owner_done(int rc, const struct Stat *stat, const void *data)
{
    req_t *q = (req_t *)data;
    scout_reg_t *r = q->r;
    zhandle_t *zh;

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
    } else if (rc == ZOK && (zh = live_zh(r)) != NULL) {
        req_t *d = req_new(r, q->path);
        scout_log(SCOUT_LOG_WARN, "register", "%s: %s belongs to session "
                  "0x%llx; replacing it", r->name, q->path,
                  (unsigned long long)stat->ephemeralOwner);
        in_flight(r, d, d != NULL && zoo_adelete(zh, q->path, stat->version,
                                                 deleted_done, d) == ZOK);
    }
    req_free(q);
    if (rc != ZCLOSING)
        reconcile(r);
    finish_if_withdrawn(r);     /* last: done() may free r */
}

static void
create_done(int rc, const char *value, const void *data)
{
    req_t *q = (req_t *)data;
    scout_reg_t *r = q->r;
    zhandle_t *zh;

    r->busy = 0;
    if (rc == ZOK) {
        r->node = strdup(value ? value : q->path);
        r->data = q->body;      /* what the node holds: what we sent */
        r->data_len = q->body_len;
        q->body = NULL;
        r->epoch = q->epoch;
        scout_log(SCOUT_LOG_INFO, "register", "%s: registered %s", r->name,
                  r->node);
    } else if (rc == ZNODEEXISTS && (zh = live_zh(r)) != NULL) {
        req_t *o = req_new(r, q->path);
        in_flight(r, o, o != NULL
                        && zoo_aexists(zh, q->path, 0, owner_done, o) == ZOK);
    } else if ((rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT)
               && r->want_seq && r->ephemeral) {
        /* the server may have made it: look before creating another */
        free(r->lost_body);
        r->lost_body = q->body;
        r->lost_len = q->body_len;
        r->lost_epoch = q->epoch;
        q->body = NULL;
        scout_log(SCOUT_LOG_INFO, "register", "%s: the answer to creating "
                  "%s was lost (%s); looking for it before creating again",
                  r->name, q->path, zerror(rc));
    } else if (rc != ZCLOSING && rc != ZSESSIONEXPIRED
               && rc != ZCONNECTIONLOSS && rc != ZOPERATIONTIMEOUT) {
        scout_log(SCOUT_LOG_WARN, "register", "%s: creating %s: %s", r->name,
                  q->path, zerror(rc));
        retry_later(r, 2.0);
    }
    req_free(q);
    if (rc != ZCLOSING && !r->busy)
        reconcile(r);
    finish_if_withdrawn(r);     /* last: done() may free r */
}

static void
set_done(int rc, const struct Stat *stat, const void *data)
{
    req_t *q = (req_t *)data;
    scout_reg_t *r = q->r;
    (void)stat;

    r->busy = 0;
    if (rc == ZNONODE && r->node != NULL && strcmp(r->node, q->path) == 0) {
        forget_node(r);         /* gone behind our back: create again */
    } else if (rc == ZOK && r->node != NULL) {
        free(r->data);          /* the node holds what this set sent */
        r->data = q->body;
        r->data_len = q->body_len;
        q->body = NULL;
    } else if (rc != ZOK && rc != ZCLOSING) {
        free(r->data);          /* unknown: write it again */
        r->data = NULL;
        r->data_len = 0;
        retry_later(r, 1.0);
    }
    req_free(q);
    if (rc != ZCLOSING)
        reconcile(r);
    finish_if_withdrawn(r);     /* last: done() may free r */
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
        q = req_new(r, p);
        if (q != NULL && zoo_acreate(zh, p, "", 0, r->acl, 0, parent_done,
                                     q) != ZOK)
            req_free(q);
        if (s == NULL)
            break;
        *s = '/';
    }
    free(p);
}

static void
forget_lost(scout_reg_t *r)
{
    free(r->lost_body);
    r->lost_body = NULL;
    r->lost_len = 0;
}

static void
stray_deleted(int rc, const void *data)
{
    req_t *q = (req_t *)data;

    if (rc != ZOK && rc != ZNONODE && rc != ZCLOSING)
        scout_log(SCOUT_LOG_WARN, "register", "%s: deleting the duplicate "
                  "%s: %s", q->r->name, q->path, zerror(rc));
    req_free(q);
}

/* One child with our prefix: is it the lost create? */
static void
lost_checked(int rc, const char *value, int value_len,
             const struct Stat *stat, const void *data)
{
    req_t *q = (req_t *)data;
    scout_reg_t *r = q->r;
    zhandle_t *zh;

    if (rc == ZOK && q->epoch == r->lost_epoch
        && stat->ephemeralOwner == scout_session_id(r->session)
        && r->lost_body != NULL && value_len == r->lost_len
        && memcmp(value, r->lost_body, (size_t)value_len) == 0) {
        if (r->node == NULL) {
            r->node = strdup(q->path);
            r->data = NULL;     /* reconcile writes the current body */
            r->epoch = q->epoch;
            scout_log(SCOUT_LOG_INFO, "register", "%s: adopted %s, created "
                      "before the connection was lost", r->name, q->path);
        } else if ((zh = live_zh(r)) != NULL) {
            req_t *d = req_new(r, q->path);
            scout_log(SCOUT_LOG_WARN, "register", "%s: deleting %s, a "
                      "duplicate of %s", r->name, q->path, r->node);
            if (d == NULL
                || zoo_adelete(zh, q->path, -1, stray_deleted, d) != ZOK)
                req_free(d);
        }
    } else if (rc != ZOK && rc != ZNONODE) {
        r->probe_failed = 1;    /* could not tell: look again */
    }
    req_free(q);
    if (--r->probing > 0)
        return;
    r->busy = 0;
    if (r->node != NULL || !r->probe_failed)
        forget_lost(r);         /* found, or surely not there */
    r->probe_failed = 0;
    if (rc != ZCLOSING)
        reconcile(r);
    finish_if_withdrawn(r);     /* last: done() may free r */
}

static void
lost_listed(int rc, const struct String_vector *names, const void *data)
{
    req_t *q = (req_t *)data;
    scout_reg_t *r = q->r;
    size_t plen = strlen(r->want_name), need;
    zhandle_t *zh = live_zh(r);
    char *path;
    int matched = 0, unprobed = 0;

    r->busy = 0;
    if (rc == ZNONODE)
        forget_lost(r);         /* no parent, no node: create */
    for (int i = 0; rc == ZOK && i < names->count; i++) {
        req_t *c = NULL;

        if (strncmp(names->data[i], r->want_name, plen) != 0)
            continue;
        matched++;
        need = strlen(q->path) + strlen(names->data[i]) + 2;
        if (zh != NULL && (path = malloc(need)) != NULL) {
            snprintf(path, need, "%s/%s", strcmp(q->path, "/") == 0 ? ""
                     : q->path, names->data[i]);
            c = req_new(r, path);
            free(path);
        }
        if (c != NULL && zoo_aget(zh, c->path, 0, lost_checked, c) == ZOK) {
            r->probing++;
        } else {
            req_free(c);
            unprobed++;         /* it may be the one: never forget unseen */
        }
    }
    r->probe_failed = unprobed > 0;    /* a new look: only its own misses */
    if (r->probing > 0)
        in_flight(r, NULL, 1);
    else if (rc == ZOK && matched == 0)
        forget_lost(r);         /* not there: the create never happened */
    else if (rc == ZOK)
        retry_later(r, 1.0);    /* candidates unchecked: look again */
    req_free(q);
    if (rc != ZCLOSING && !r->busy)
        reconcile(r);
    finish_if_withdrawn(r);     /* last: done() may free r */
}

/* Before creating again after a lost sequential create: list the parent
 * (lost_listed), then read each child with our prefix (lost_checked). */
static void
find_lost_create(scout_reg_t *r, zhandle_t *zh)
{
    req_t *q = req_new(r, r->parent);

    if (!in_flight(r, q, q != NULL && zoo_aget_children(zh, r->parent, 0,
                                                        lost_listed, q) == ZOK))
        retry_later(r, 1.0);
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

static void
reconcile(scout_reg_t *r)
{
    zhandle_t *zh = live_zh(r);
    int want = r->healthy && !r->withdrawing;
    char path[4096];
    req_t *q;

    if (zh == NULL || r->busy)
        return;
    if (r->node != NULL && r->epoch != scout_session_epoch(r->session)
        && r->ephemeral)
        forget_node(r);         /* the session that owned it is gone */
    if (!want && r->node != NULL) {
        q = req_new(r, r->node);
        in_flight(r, q, q != NULL && zoo_adelete(zh, r->node, -1,
                                                 deleted_done, q) == ZOK);
        return;
    }
    if (!want || r->want_name == NULL)
        return;
    if (r->node != NULL && !node_matches(r)) {
        /* a reload changed where the node lives or what it is called
         * (parent, port, codec): the old one goes, the new one follows */
        q = req_new(r, r->node);
        in_flight(r, q, q != NULL && zoo_adelete(zh, r->node, -1,
                                                 deleted_done, q) == ZOK);
        return;
    }
    if (r->node == NULL && r->lost_body != NULL) {
        if (r->lost_epoch == scout_session_epoch(r->session)) {
            find_lost_create(r, zh);
            return;
        }
        forget_lost(r);         /* its session is gone, and the node too */
    }
    if (r->node == NULL) {
        int flags = (r->ephemeral ? ZOO_EPHEMERAL : 0)
                    | (r->want_seq ? ZOO_SEQUENCE : 0);
        snprintf(path, sizeof(path), "%s/%s",
                 strcmp(r->parent, "/") == 0 ? "" : r->parent, r->want_name);
        create_parents(r, zh);
        q = req_new(r, path);
        in_flight(r, q, req_body(q, r->want_data, r->want_len) == SCOUT_OK
                        && zoo_acreate(zh, path, r->want_data, r->want_len,
                                       r->acl, flags, create_done, q) == ZOK);
        return;
    }
    if (r->data == NULL || r->data_len != r->want_len
        || memcmp(r->data, r->want_data, (size_t)r->want_len) != 0) {
        /* the body changed (weight, meta): rewrite in place; r->data
         * follows only once the server took it (set_done) */
        q = req_new(r, r->node);
        in_flight(r, q, req_body(q, r->want_data, r->want_len) == SCOUT_OK
                        && zoo_aset(zh, r->node, r->want_data, r->want_len, -1,
                                    set_done, q) == ZOK);
    }
}

static void
on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_reg_t *r = t->data;
    (void)loop;
    (void)revents;

    if (!r->withdrawing)
        refresh_body(r);
    reconcile(r);
    if (!r->withdrawing)
        retry_later(r, 2.0);    /* the body may depend on the world */
}

static void
on_check(void *ud, int up, const char *reason)
{
    scout_reg_set_healthy(ud, up, reason);
}

/* check = { lua = function() ... end }: the policy answers. */
static int
lua_check(void *ud, char *reason, size_t len)
{
    scout_reg_t *r = ud;
    return scout_policy_register_check(r->policy, r->idx, reason, len);
}

static int
same_check(const scout_reg_conf_t *a, const scout_reg_conf_t *b)
{
    return ((a->check_kind == NULL && b->check_kind == NULL)
            || (a->check_kind && b->check_kind
                && strcmp(a->check_kind, b->check_kind) == 0))
           && ((a->check_target == NULL && b->check_target == NULL)
               || (a->check_target && b->check_target
                   && strcmp(a->check_target, b->check_target) == 0))
           && a->check_interval_ms == b->check_interval_ms
           && a->check_timeout_ms == b->check_timeout_ms
           && a->check_rise == b->check_rise && a->check_fall == b->check_fall;
}

/* A registration with a check starts unhealthy: nothing is announced
 * before the service has been seen up `rise` times. */
static int
start_check(scout_reg_t *r, const scout_reg_conf_t *conf, char *err)
{
    scout_check_conf_t cc;

    scout_check_free(r->check);
    r->check = NULL;
    free(r->check_conf.check_kind);
    free(r->check_conf.check_target);
    /* only the check settings are kept (for same_check); the strings are
     * our own copies, the rest is not used */
    memset(&r->check_conf, 0, sizeof(r->check_conf));
    r->check_conf.check_interval_ms = conf->check_interval_ms;
    r->check_conf.check_timeout_ms = conf->check_timeout_ms;
    r->check_conf.check_rise = conf->check_rise;
    r->check_conf.check_fall = conf->check_fall;
    if (conf->check_kind == NULL) {
        r->healthy = 1;
        return SCOUT_OK;
    }
    memset(&cc, 0, sizeof(cc));
    cc.kind = scout_check_kind_parse(conf->check_kind);
    cc.target = conf->check_target;
    cc.interval_ms = conf->check_interval_ms;
    cc.timeout_ms = conf->check_timeout_ms;
    cc.rise = conf->check_rise;
    cc.fall = conf->check_fall;
    cc.lua_fn = lua_check;
    cc.lua_ud = r;
    r->healthy = 0;
    r->check = scout_check_new(r->loop, &cc, on_check, r, err);
    if (r->check == NULL)
        return SCOUT_ERROR;
    r->check_conf.check_kind = strdup(conf->check_kind);
    r->check_conf.check_target = conf->check_target
                                 ? strdup(conf->check_target) : NULL;
    return SCOUT_OK;
}

scout_reg_t *
scout_reg_new(struct ev_loop *loop, scout_session_t *session,
              scout_policy_t *policy, int idx, const scout_reg_conf_t *conf,
              char *err)
{
    scout_reg_t *r = calloc(1, sizeof(*r));

    if (r == NULL || (r->name = strdup(conf->name)) == NULL
        || (r->parent = strdup(conf->path)) == NULL) {
        if (r != NULL)
            free(r->name);
        free(r);
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return NULL;
    }
    r->loop = loop;
    r->session = session;
    r->policy = policy;
    r->idx = idx;
    r->ephemeral = conf->ephemeral;
    r->healthy = 1;             /* until a check says otherwise */
    init_acls();
    if (conf->acl != NULL && strcmp(conf->acl, "open") == 0)
        r->acl = &ZOO_OPEN_ACL_UNSAFE;
    else if (conf->acl != NULL && strcmp(conf->acl, "private") == 0)
        r->acl = &acl_private;
    else if (conf->acl != NULL || conf->authenticated)
        r->acl = &acl_creator;
    else
        r->acl = &ZOO_OPEN_ACL_UNSAFE;
    ev_init(&r->tick, on_tick);
    r->tick.data = r;
    if (start_check(r, conf, err) != SCOUT_OK) {
        char why[SCOUT_ERR_LEN];
        snprintf(why, sizeof(why), "register \"%s\": check: %s", conf->name,
                 err);
        memcpy(err, why, SCOUT_ERR_LEN);
        scout_reg_free(r);
        return NULL;
    }
    if (refresh_body(r) != SCOUT_OK) {
        snprintf(err, SCOUT_ERR_LEN, "register \"%s\": the endpoint cannot "
                 "be encoded (see the log)", conf->name);
        scout_reg_free(r);
        return NULL;
    }
    retry_later(r, 2.0);
    return r;
}

int
scout_reg_rebind(scout_reg_t *r, scout_policy_t *policy, int idx,
                 const scout_reg_conf_t *conf, char *err)
{
    char *parent = strdup(conf->path);

    if (parent == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return SCOUT_ERROR;
    }
    r->policy = policy;
    r->idx = idx;
    r->ephemeral = conf->ephemeral;
    free(r->parent);
    r->parent = parent;
    /* an unchanged check keeps running (a reload must not make the
     * registration flap); a changed one starts over from unhealthy */
    if (!same_check(&r->check_conf, conf)
        && start_check(r, conf, err) != SCOUT_OK)
        return SCOUT_ERROR;
    /* the reload checked the endpoint already: one that raises now is a
     * passing failure, like on a refresh tick, and the node keeps its last
     * body rather than being dropped */
    refresh_body(r);
    reconcile(r);
    return SCOUT_OK;
}

void
scout_reg_free(scout_reg_t *r)
{
    if (r == NULL)
        return;
    ev_timer_stop(r->loop, &r->tick);
    scout_check_free(r->check);
    free(r->check_conf.check_kind);
    free(r->check_conf.check_target);
    forget_node(r);
    forget_lost(r);
    free(r->want_name);
    free(r->want_data);
    free(r->name);
    free(r->parent);
    free(r);
}

void
scout_reg_on_session(scout_reg_t *r, scout_session_state_t state,
                     int new_session)
{
    if (state != SCOUT_SESSION_CONNECTED)
        return;
    if (new_session) {
        r->busy = 0;            /* old completions ran at close */
        r->probing = 0;
        r->probe_failed = 0;
        refresh_body(r);        /* the current body, not the first */
    }
    reconcile(r);
}

void
scout_reg_set_healthy(scout_reg_t *r, int up, const char *reason)
{
    if (r->healthy == up)
        return;
    r->healthy = up;
    scout_log(up ? SCOUT_LOG_INFO : SCOUT_LOG_WARN, "register", "%s: %s%s%s",
              r->name, up ? "healthy" : "unhealthy", reason ? ": " : "",
              reason ? reason : "");
    reconcile(r);
}

void
scout_reg_withdraw(scout_reg_t *r, scout_reg_done_fn done, void *ud)
{
    r->withdrawing = 1;
    r->policy = NULL;           /* a reload may free it before we are done */
    scout_check_free(r->check);  /* no more flips while we leave */
    r->check = NULL;
    r->done = done;
    r->done_ud = ud;
    ev_timer_stop(r->loop, &r->tick);
    reconcile(r);
    finish_if_withdrawn(r);
}

const char *
scout_reg_name(const scout_reg_t *r)
{
    return r->name;
}

