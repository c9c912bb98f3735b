/*
 * register.h -- announce a local service in ZooKeeper (the Nerve half of
 * SmartStack, Curator's registerService): the node a dubbo consumer, an rpcx
 * client or Curator expects, written by the codec's encode, present while
 * the service is healthy, re-created with its current body on every new
 * session, and deleted first on shutdown.
 */
#ifndef SCOUT_REGISTER_H
#define SCOUT_REGISTER_H

#include <ev.h>

#include "policy/policy.h"
#include "zk/session.h"

typedef struct scout_reg_s scout_reg_t;

/* Called when a registration has nothing left in ZooKeeper after
 * scout_reg_withdraw() (or gave up trying). */
typedef void (*scout_reg_done_fn)(void *ud, scout_reg_t *r);

scout_reg_t *scout_reg_new(struct ev_loop *loop, scout_session_t *session,
                           scout_policy_t *policy, int idx,
                           const scout_reg_conf_t *conf, char *err);
void scout_reg_free(scout_reg_t *r);
/* Can the idx-th registration of policy p be built (its endpoint raises
 * nothing and encodes)?  A reload asks before it takes a policy. */
int  scout_reg_validate(scout_policy_t *p, int idx,
                        const scout_reg_conf_t *conf, char *err);
/* A reload kept this registration (same name): take the new settings and
 * the current body; a changed node name replaces the node. */
int  scout_reg_rebind(scout_reg_t *r, scout_policy_t *policy, int idx,
                      const scout_reg_conf_t *conf, char *err);

void scout_reg_on_session(scout_reg_t *r, scout_session_state_t state,
                          int new_session);
/* The health check's verdict; without a check a registration is up. */
void scout_reg_set_healthy(scout_reg_t *r, int up, const char *reason);
/* Shutdown: delete the node; done is called once nothing is left. */
void scout_reg_withdraw(scout_reg_t *r, scout_reg_done_fn done, void *ud);

const char *scout_reg_name(const scout_reg_t *r);

/* A registration as /v1/registrations shows it.  Strings are borrowed from
 * the registration until the next return to the loop. */
#define SCOUT_REG_HISTORY 8
typedef struct {
    double      at;             /* wall clock, seconds since the epoch */
    int         up;
    char        reason[160];
} scout_reg_flip_t;

typedef struct {
    const char *name;
    const char *node;           /* full path, NULL while there is none */
    /* "registered" (node present), "pending" (wanted, not there yet),
     * "unhealthy" (the check withdrew it), "withdrawing" (shutdown or a
     * reload dropped it) */
    const char *state;
    const char *check_kind;     /* NULL: no check, always healthy */
    const char *check_target;
    int         healthy;
    const char *check_reason;   /* what the last round saw, or "" */
    int         nflips;         /* newest first, at most SCOUT_REG_HISTORY */
    const scout_reg_flip_t *flips[SCOUT_REG_HISTORY];
} scout_reg_info_t;

void scout_reg_info(const scout_reg_t *r, scout_reg_info_t *out);

#endif
