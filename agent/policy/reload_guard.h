/*
 * reload_guard.h -- whether a reloaded policy may replace the running one.
 *
 * A SIGHUP that lands on an empty or truncated policy file (a config push
 * that truncates, then writes) loads fine and would drop every service: an
 * outage from a race.  The guard refuses a policy that defines nothing at
 * all while the agent runs something, and one that drops more than
 * agent.reload_max_drop of the running services (by name; a renamed
 * service counts as dropped).  The share is read from the NEW policy, so
 * the edit that shrinks the agent on purpose says so itself (agent {
 * reload_max_drop = 1 }), and a file that lost its agent block falls back
 * to the default, 0.5.
 */
#ifndef SCOUT_RELOAD_GUARD_H
#define SCOUT_RELOAD_GUARD_H

#include "policy/policy.h"

/* SCOUT_OK when next may replace running; SCOUT_ERROR with "policy.lua
 * would drop 2 of 3 services (67%, over agent.reload_max_drop = 0.5) ..."
 * in err otherwise. */
int scout_reload_guard_check(const scout_conf_t *running,
                             const scout_conf_t *next, const char *file,
                             char *err);

#endif
