/*
 * register.c -- one registration: what it wants (healthy, the current body)
 * and the public side that drives it: the policy's endpoint, asked again
 * every tick (the current body is written, never the first one:
 * CURATOR-181), the health check, reloads, sessions and withdrawal.  What
 * it has in ZooKeeper is node.c's; a lost sequential create is lost.c's.
 */
#include "register/reg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scout.h"

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
on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_reg_t *r = t->data;
    (void)loop;
    (void)revents;

    if (!r->withdrawing)
        refresh_body(r);
    scout_reg_reconcile(r);
    if (!r->withdrawing)
        scout_reg_retry_later(r, 2.0);    /* the body may depend on the world */
    else
        scout_reg_finish_if_withdrawn(r); /* last: done() may free r */
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
    scout_reg_retry_later(r, 2.0);
    scout_reg_track(r, 1);
    return r;
}

int
scout_reg_validate(scout_policy_t *p, int idx, const scout_reg_conf_t *conf,
                   char *err)
{
    char why[SCOUT_ERR_LEN], *name = NULL, *data = NULL;
    int len, seq;

    if (scout_policy_register_body(p, idx, &name, &data, &len, &seq, why)
        != SCOUT_OK) {
        snprintf(err, SCOUT_ERR_LEN, "register \"%s\": the endpoint cannot "
                 "be encoded: %s", conf->name, why);
        return SCOUT_ERROR;
    }
    free(name);
    free(data);
    return SCOUT_OK;
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
    scout_reg_reconcile(r);
    return SCOUT_OK;
}

static void
destroy(scout_reg_t *r)
{
    free(r->check_conf.check_kind);
    free(r->check_conf.check_target);
    scout_reg_forget_node(r);
    scout_reg_forget_lost(r);
    free(r->gone);
    free(r->want_name);
    free(r->want_data);
    free(r->name);
    free(r->parent);
    free(r);
}

void
scout_reg_release(scout_reg_t *r)
{
    if (--r->refs == 0 && r->freed)
        destroy(r);
}

/* Stops everything now; the memory goes with the last answer still due
 * (a duplicate's delete, a node watch's exists), which then finds it
 * freed and does nothing. */
void
scout_reg_free(scout_reg_t *r)
{
    if (r == NULL)
        return;
    scout_reg_track(r, 0);      /* no node event reaches it any more */
    ev_timer_stop(r->loop, &r->tick);
    scout_check_free(r->check);
    r->check = NULL;
    r->freed = 1;
    if (r->refs == 0)
        destroy(r);
}

void
scout_reg_on_session(scout_reg_t *r, scout_session_state_t state,
                     int new_session)
{
    if (state != SCOUT_SESSION_CONNECTED)
        return;
    if (new_session) {
        r->busy = 0;            /* old completions ran at close */
        r->deleting = 0;
        r->probing = 0;
        r->probe_failed = 0;
        refresh_body(r);        /* the current body, not the first */
    }
    scout_reg_reconcile(r);
    /* a withdrawn node may have gone with the old session: finish from the
     * tick, not from under the caller walking its registrations */
    if (r->withdrawing)
        scout_reg_retry_later(r, 0.);
}

void
scout_reg_set_healthy(scout_reg_t *r, int up, const char *reason)
{
    scout_reg_flip_t *f;

    if (r->healthy == up)
        return;
    r->healthy = up;
    f = &r->flips[r->nflips++ % SCOUT_REG_HISTORY];
    f->at = scout_wall_ms() / 1000.0;
    f->up = up;
    snprintf(f->reason, sizeof(f->reason), "%s", reason ? reason : "");
    scout_log(up ? SCOUT_LOG_INFO : SCOUT_LOG_WARN, "register", "%s: %s%s%s",
              r->name, up ? "healthy" : "unhealthy", reason ? ": " : "",
              reason ? reason : "");
    scout_reg_reconcile(r);
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
    scout_reg_reconcile(r);
    scout_reg_finish_if_withdrawn(r);
}

const char *
scout_reg_name(const scout_reg_t *r)
{
    return r->name;
}

void
scout_reg_info(const scout_reg_t *r, scout_reg_info_t *out)
{
    unsigned n = r->nflips < SCOUT_REG_HISTORY ? r->nflips
                                               : SCOUT_REG_HISTORY;

    memset(out, 0, sizeof(*out));
    out->name = r->name;
    out->node = r->node;
    out->state = r->withdrawing ? "withdrawing"
                 : r->node != NULL ? "registered"
                 : r->healthy ? "pending" : "unhealthy";
    out->check_kind = r->check != NULL ? r->check_conf.check_kind : NULL;
    out->check_target = r->check != NULL ? r->check_conf.check_target : NULL;
    out->healthy = r->healthy;
    out->check_reason = r->check != NULL ? scout_check_reason(r->check) : "";
    out->nflips = (int)n;
    for (unsigned i = 0; i < n; i++)
        out->flips[i] = &r->flips[(r->nflips - 1 - i) % SCOUT_REG_HISTORY];
}


