/*
 * lost.c -- a sequential create whose answer is lost (the connection
 * dropped after the server took it) may have made a node we do not know
 * of; creating again would leave a second ephemeral node of ours, a
 * phantom endpoint for as long as the session lives (Curator's "protection
 * mode" problem).  So before creating again the parent is listed, and a
 * child with our prefix, owned by our session and holding exactly the
 * bytes of the lost create is adopted.  Only one create can be in doubt:
 * the next one is sent only once the look found nothing.  The look happens
 * whatever the registration wants by then: one whose check failed or that
 * is being withdrawn adopts the node to delete it.
 */
#include "register/reg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scout.h"

void
scout_reg_forget_lost(scout_reg_t *r)
{
    free(r->lost_body);
    free(r->lost_path);
    r->lost_body = NULL;
    r->lost_path = NULL;
    r->lost_len = 0;
}

/* The lost create's name, a prefix of the node the server made. */
static const char *
lost_prefix(const scout_reg_t *r)
{
    return strrchr(r->lost_path, '/') + 1;
}

static void
stray_deleted(int rc, const void *data)
{
    req_t *q = (req_t *)data;

    if (scout_reg_orphan(q))
        return;
    if (rc != ZOK && rc != ZNONODE && rc != ZCLOSING)
        scout_log(SCOUT_LOG_WARN, "register", "%s: deleting the duplicate "
                  "%s: %s", q->r->name, q->path, zerror(rc));
    scout_reg_req_free(q);
}

/* One child with our prefix: is it the lost create? */
static void
lost_checked(int rc, const char *value, int value_len,
             const struct Stat *stat, const void *data)
{
    req_t *q = (req_t *)data;
    scout_reg_t *r = q->r;
    zhandle_t *zh;

    if (scout_reg_orphan(q))
        return;
    if (rc == ZOK && q->epoch == r->lost_epoch
        && stat->ephemeralOwner == scout_session_id(r->session)
        && r->lost_body != NULL && value_len == r->lost_len
        && memcmp(value, r->lost_body, (size_t)value_len) == 0) {
        if (r->node == NULL && (r->node = strdup(q->path)) != NULL) {
            r->data = NULL;     /* reconcile writes the current body */
            r->epoch = q->epoch;
            scout_log(SCOUT_LOG_INFO, "register", "%s: adopted %s, created "
                      "before the connection was lost", r->name, q->path);
            scout_reg_held(r);
        } else if (r->node != NULL && (zh = scout_reg_live_zh(r)) != NULL) {
            req_t *d = scout_reg_req_new(r, q->path);
            scout_log(SCOUT_LOG_WARN, "register", "%s: deleting %s, a "
                      "duplicate of %s", r->name, q->path, r->node);
            if (d == NULL
                || zoo_adelete(zh, q->path, -1, stray_deleted, d) != ZOK)
                scout_reg_req_free(d);
        }
    } else if (rc != ZOK && rc != ZNONODE) {
        r->probe_failed = 1;    /* could not tell: look again */
    }
    scout_reg_req_free(q);
    if (--r->probing > 0)
        return;
    r->busy = 0;
    if (r->node != NULL || !r->probe_failed)
        scout_reg_forget_lost(r);   /* found, or surely not there */
    r->probe_failed = 0;
    if (rc != ZCLOSING)
        scout_reg_reconcile(r);
    scout_reg_finish_if_withdrawn(r);     /* last: done() may free r */
}

static void
lost_listed(int rc, const struct String_vector *names, const void *data)
{
    req_t *q = (req_t *)data;
    scout_reg_t *r = q->r;
    zhandle_t *zh;
    const char *prefix;
    size_t plen, need;
    char *path;
    int matched = 0, unprobed = 0;

    if (scout_reg_orphan(q))
        return;
    r->busy = 0;
    if (rc == ZOK && r->lost_path == NULL)
        rc = ZNONODE;           /* forgotten meanwhile: nothing to look for */
    zh = scout_reg_live_zh(r);
    prefix = rc == ZOK ? lost_prefix(r) : "";
    plen = strlen(prefix);
    if (rc == ZNONODE)
        scout_reg_forget_lost(r);   /* no parent, no node: create */
    for (int i = 0; rc == ZOK && i < names->count; i++) {
        req_t *c = NULL;

        if (strncmp(names->data[i], prefix, plen) != 0)
            continue;
        matched++;
        need = strlen(q->path) + strlen(names->data[i]) + 2;
        if (zh != NULL && (path = malloc(need)) != NULL) {
            snprintf(path, need, "%s/%s", strcmp(q->path, "/") == 0 ? ""
                     : q->path, names->data[i]);
            c = scout_reg_req_new(r, path);
            free(path);
        }
        if (c != NULL && zoo_aget(zh, c->path, 0, lost_checked, c) == ZOK) {
            r->probing++;
        } else {
            scout_reg_req_free(c);
            unprobed++;         /* it may be the one: never forget unseen */
        }
    }
    r->probe_failed = unprobed > 0;    /* a new look: only its own misses */
    if (r->probing > 0)
        scout_reg_in_flight(r, NULL, 1);
    else if (rc == ZOK && matched == 0)
        scout_reg_forget_lost(r);   /* not there: never created */
    else if (rc == ZOK)
        scout_reg_retry_later(r, 1.0);  /* candidates unchecked: again */
    scout_reg_req_free(q);
    if (rc != ZCLOSING && !r->busy)
        scout_reg_reconcile(r);
    scout_reg_finish_if_withdrawn(r);     /* last: done() may free r */
}

/* Before creating again after a lost sequential create: list the parent
 * it was sent to (lost_listed), then read each child with its prefix
 * (lost_checked). */
void
scout_reg_find_lost_create(scout_reg_t *r, zhandle_t *zh)
{
    size_t plen = (size_t)(strrchr(r->lost_path, '/') - r->lost_path);
    char *parent = plen == 0 ? strdup("/") : strndup(r->lost_path, plen);
    req_t *q = parent != NULL ? scout_reg_req_new(r, parent) : NULL;

    free(parent);
    if (!scout_reg_in_flight(r, q, q != NULL
                                   && zoo_aget_children(zh, q->path, 0,
                                                        lost_listed, q)
                                      == ZOK))
        scout_reg_retry_later(r, 1.0);
}
