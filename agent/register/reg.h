/*
 * reg.h -- the registration's state, shared by the files of the register
 * stage and by nothing else: register.c (the public side: policy, health
 * check, ticks), node.c (the requests that make ZooKeeper hold the node we
 * want) and lost.c (the search for a sequential create whose answer was
 * lost).  Outside register/ a registration is the opaque scout_reg_t.
 */
#ifndef SCOUT_REGISTER_REG_H
#define SCOUT_REGISTER_REG_H

#include <stdint.h>

#include "register/check.h"
#include "register/register.h"

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
    /* the check's flips for /v1/registrations: a ring, newest at
     * flips[(nflips - 1) % SCOUT_REG_HISTORY] */
    scout_reg_flip_t   flips[SCOUT_REG_HISTORY];
    unsigned           nflips;
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
    int                deleting;    /* the chain in flight deletes node */
    char              *gone;        /* our node, deleted by another client */
    /* a sequential create whose answer was lost: its path (parent and
     * prefix), bytes and session */
    char              *lost_path;
    char              *lost_body;
    int                lost_len;
    uint64_t           lost_epoch;
    int                probing;     /* lost-create checks in flight */
    int                probe_failed;
    /* Lifetime: every request holds a reference, so a completion never
     * reads a freed registration; scout_reg_free() only marks it freed
     * when answers are still due, and the last of them frees it. */
    int                refs;
    int                freed;
    scout_reg_t       *next_live;   /* node events find us here */
};

/* One request's context: freed by its completion, which ZooKeeper calls
 * exactly once (with ZCLOSING when the handle is closed). */
typedef struct {
    scout_reg_t *r;
    uint64_t     epoch;
    char        *body;          /* what a create or set sent */
    int          body_len;
    char         path[];
} req_t;

/* register.c: drop a request's reference (frees a freed registration
 * once nothing refers to it any more) */
void       scout_reg_release(scout_reg_t *r);

/* node.c */
req_t     *scout_reg_req_new(scout_reg_t *r, const char *path);
void       scout_reg_req_free(req_t *q);
int        scout_reg_req_body(req_t *q, const char *body, int len);
int        scout_reg_in_flight(scout_reg_t *r, req_t *q, int ok);
zhandle_t *scout_reg_live_zh(scout_reg_t *r);
void       scout_reg_forget_node(scout_reg_t *r);
void       scout_reg_retry_later(scout_reg_t *r, double seconds);
void       scout_reg_finish_if_withdrawn(scout_reg_t *r);
void       scout_reg_reconcile(scout_reg_t *r);
/* Node events reach only registrations on this list (scout_reg_new adds,
 * scout_reg_free removes): ZooKeeper keeps a watch until it fires, and the
 * 3.8 C client cannot remove one, so a watch never points at a
 * registration. */
void       scout_reg_track(scout_reg_t *r, int on);
/* We hold r->node now (created or adopted): watch it, so a deletion by
 * another client brings it back (and log one that did). */
void       scout_reg_held(scout_reg_t *r);
/* The completion of q: 1 (and q freed) when its registration is gone. */
int        scout_reg_orphan(req_t *q);

/* lost.c */
void       scout_reg_forget_lost(scout_reg_t *r);
void       scout_reg_find_lost_create(scout_reg_t *r, zhandle_t *zh);

#endif
