/*
 * agent_reload.c -- SIGHUP: load the policy file again into a new VM and
 * apply it as a difference.  Services and registrations kept by name keep
 * their state and their session; others are added or retired.  Whatever
 * fails -- the load, a registration that cannot be built, the reload guard
 * -- leaves the running policy in place and changes nothing.
 */
#include "agent_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "policy/reload_guard.h"
#include "zk/watch.h"

/* ---- SIGHUP: a new policy, applied as a difference ------------------------- */

static void
on_retired(void *ud, scout_reg_t *r)
{
    scout_agent_t *a = ud;

    for (int i = 0; i < a->nretiring; i++) {
        if (a->retiring[i] == r) {
            a->retiring[i] = a->retiring[--a->nretiring];
            break;
        }
    }
    scout_reg_free(r);
}

static int
same_str(const char *x, const char *y)
{
    return (x == NULL && y == NULL) || (x && y && strcmp(x, y) == 0);
}

/* What a reload cannot change without dropping the session (or the
 * listening socket): kept as running, with a warning. */
static void
keep_running_settings(scout_agent_t *a, scout_conf_t *nc)
{
    if (!same_str(a->conf.zk_servers, nc->zk_servers)
        || a->conf.zk_timeout_ms != nc->zk_timeout_ms
        || !same_str(a->conf.auth_scheme, nc->auth_scheme)
        || !same_str(a->conf.auth_cred, nc->auth_cred)
        || !same_str(a->conf.api_listen, nc->api_listen)
        || !same_str(a->conf.cache_dir, nc->cache_dir)
        || !same_str(a->conf.shm_path, nc->shm_path))
        scout_log(SCOUT_LOG_WARN, "agent", "reload: zookeeper, api, cache "
                  "and shm settings need a restart; keeping the running ones");
#define KEEP(f) do { char *t = nc->f; nc->f = a->conf.f; a->conf.f = t; } \
                while (0)
    KEEP(zk_servers);
    KEEP(auth_scheme);
    KEEP(auth_cred);
    KEEP(api_listen);
    KEEP(cache_dir);
    KEEP(shm_path);
#undef KEEP
    nc->zk_timeout_ms = a->conf.zk_timeout_ms;
    nc->zk_sessions = a->conf.zk_sessions;
    nc->zk_watch_budget = a->conf.zk_watch_budget;
    nc->cache_max_age_ms = a->conf.cache_max_age_ms;
}

static int reload(scout_agent_t *a, char *err);

/* Every reload's result is kept for /v1/agent: an operator who sent a
 * SIGHUP asks whether it took, without reading the log. */
int
scout_agent_reload(scout_agent_t *a, char *err)
{
    int rc = reload(a, err);

    a->reloads++;
    a->reload_at = scout_wall_ms() / 1000.0;
    a->reload_ok = rc == SCOUT_OK;
    a->reloads_ok += a->reload_ok;
    snprintf(a->reload_err, sizeof(a->reload_err), "%s",
             rc == SCOUT_OK ? "" : err);
    return rc;
}

static int
reload(scout_agent_t *a, char *err)
{
    scout_policy_t *np;
    scout_service_t **svcs = NULL, **old = a->by_name, **idx = NULL;
    scout_service_t **old_list = a->services;   /* renders, persist and shm
                                                   hold it until told */
    scout_reg_t **regs = NULL;
    int kept = 0, added = 0, dropped = 0, nold = a->nservices;
    char *taken = NULL;         /* old services moved over, by position in
                                   the old name index (a->services stays
                                   whole: publishes walk it) */
    scout_conf_t nc;

    if (a->done != NULL) {
        snprintf(err, SCOUT_ERR_LEN, "shutting down");
        return SCOUT_ERROR;
    }
    np = scout_policy_new(a->opts.lua_dir, err);
    if (np == NULL)
        return SCOUT_ERROR;
    scout_policy_attach(np, a->loop);
    /* Loading holds the loop: it must end well inside the running
     * session's timeout, whatever the policy's top level does. */
    scout_policy_set_load_budget(np, a->conf.zk_timeout_ms / 3 < 5000
                                     ? a->conf.zk_timeout_ms / 3 : 5000);
    if (scout_policy_load(np, a->opts.policy_file, &nc, err) != SCOUT_OK) {
        scout_policy_free(np);
        return SCOUT_ERROR;
    }
    scout_agent_log_warnings(&nc);
    if (scout_agent_apply_command_line(&nc, &a->opts, err) != SCOUT_OK) {
        scout_conf_free(&nc);
        scout_policy_free(np);
        return SCOUT_ERROR;
    }
    if (scout_reload_guard_check(&a->conf, &nc, a->opts.policy_file, err)
        != SCOUT_OK) {
        scout_conf_free(&nc);
        scout_policy_free(np);
        return SCOUT_ERROR;
    }
    /* a registration that cannot be built refuses the policy: taking it
     * would retire the running one and delete its node */
    for (int i = 0; i < nc.nregisters; i++) {
        if (scout_reg_validate(np, i, &nc.registers[i], err) != SCOUT_OK) {
            scout_conf_free(&nc);
            scout_policy_free(np);
            return SCOUT_ERROR;
        }
    }
    keep_running_settings(a, &nc);
    svcs = calloc((size_t)(nc.nservices ? nc.nservices : 1), sizeof(*svcs));
    /* the old services' paths stay indexed until they are retired */
    scout_watch_index_reserve((size_t)a->nservices + (size_t)nc.nservices);
    regs = calloc((size_t)(nc.nregisters ? nc.nregisters : 1), sizeof(*regs));
    idx = malloc((size_t)(nc.nservices ? nc.nservices : 1) * sizeof(*idx));
    taken = calloc((size_t)(nold ? nold : 1), 1);
    if (svcs == NULL || regs == NULL || idx == NULL || taken == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        goto fail;
    }
    /* From here on the new policy is in force: nothing below backs out. */
    for (int i = 0; i < nc.nservices; i++) {
        scout_service_conf_t *sc = &nc.services[i];
        int j = scout_agent_find_by_name(old, nold, sc->name);

        if (j >= 0 && !taken[j]) {
            scout_service_t *o = old[j];
            /* its old config: idx is its place in the running policy */
            const scout_service_conf_t *oc =
                &a->conf.services[scout_service_idx(o)];

            if (strcmp(oc->path, sc->path) == 0
                && sc->codec != NULL && same_str(oc->codec, sc->codec)
                && scout_service_rebind(o, np, i, sc, err) == SCOUT_OK) {
                svcs[i] = o;
                taken[j] = 1;
                kept++;
            }
        }
        if (svcs[i] == NULL) {
            scout_session_t *ss = a->sessions[i % a->nbase];
            svcs[i] = scout_service_new(a->loop, ss, np, i, sc, err);
            if (svcs[i] == NULL) {
                scout_log(SCOUT_LOG_ERROR, "agent", "reload: service %s: %s",
                          sc->name, err);
                continue;
            }
            scout_service_on_publish(svcs[i], scout_agent_on_publish, a);
            scout_service_on_state(svcs[i], scout_agent_on_state);
            if (scout_session_state(ss) == SCOUT_SESSION_CONNECTED)
                scout_service_on_session(svcs[i], SCOUT_SESSION_CONNECTED, 1,
                                         0);
            added++;
        }
    }
    /* the new list first (publishes walk it), then the dropped ones go */
    {
        int n = 0;
        for (int i = 0; i < nc.nservices; i++)
            if (svcs[i] != NULL)
                svcs[n++] = svcs[i];
        a->services = svcs;
        a->nservices = n;
        a->by_session_stale = 1;    /* on_session indexes them again */
        scout_agent_index_by_name(idx, svcs, n);
        a->by_name = idx;       /* the old index stays in old until below */
        idx = NULL;
    }
    for (int j = 0; j < nold; j++) {
        if (taken[j])
            continue;
        if (a->api != NULL)
            scout_api_notify(a->api, old[j]);   /* wake parked queries */
        scout_service_retire(old[j]);
        dropped++;
    }
    free(old);                  /* the old name index */
    free(taken);
    taken = NULL;

    for (int i = 0; i < nc.nregisters; i++) {
        for (int j = 0; j < a->nregs; j++) {
            if (a->regs[j] != NULL
                && strcmp(scout_reg_name(a->regs[j]), nc.registers[i].name)
                   == 0
                && scout_reg_rebind(a->regs[j], np, i, &nc.registers[i], err)
                   == SCOUT_OK) {
                regs[i] = a->regs[j];
                a->regs[j] = NULL;
                break;
            }
        }
        if (regs[i] == NULL) {
            regs[i] = scout_reg_new(a->loop, a->sessions[0], np, i,
                                    &nc.registers[i], err);
            if (regs[i] == NULL) {
                scout_log(SCOUT_LOG_ERROR, "agent", "reload: %s", err);
                continue;
            }
            scout_reg_on_session(regs[i], scout_session_state(a->sessions[0]),
                                 1);
        }
    }
    for (int j = 0; j < a->nregs; j++) {
        scout_reg_t **t;
        if (a->regs[j] == NULL)
            continue;
        t = realloc(a->retiring, (size_t)(a->nretiring + 1) * sizeof(*t));
        if (t == NULL) {
            /* out of memory: withdraw it untracked (leaked, never freed
             * under its own requests in flight) */
            scout_reg_withdraw(a->regs[j], NULL, NULL);
            continue;
        }
        a->retiring = t;
        a->retiring[a->nretiring++] = a->regs[j];
        scout_reg_withdraw(a->regs[j], on_retired, a);
    }
    {
        int n = 0;
        for (int i = 0; i < nc.nregisters; i++)
            if (regs[i] != NULL)
                regs[n++] = regs[i];
        free(a->regs);
        a->regs = regs;
        a->nregs = n;
    }

    for (int i = 0; i < a->nrenders; i++)
        scout_render_free(a->renders[i]);
    free(a->renders);
    a->renders = NULL;
    a->nrenders = 0;
    if (nc.nrenders > 0
        && (a->renders = calloc((size_t)nc.nrenders, sizeof(*a->renders)))
           != NULL) {
        for (int i = 0; i < nc.nrenders; i++) {
            a->renders[a->nrenders] = scout_render_new(
                a->loop, np, i, &nc.renders[i], a->services, a->nservices, err);
            if (a->renders[a->nrenders] != NULL)
                scout_render_changed(a->renders[a->nrenders++]);
        }
    }
    if (a->persist != NULL) {
        scout_persist_set_services(a->persist, a->services, a->nservices);
        scout_persist_changed(a->persist, NULL);
    }
    if (a->shm != NULL) {
        scout_shmpub_set_services(a->shm, a->services, a->nservices);
        scout_shmpub_changed(a->shm, NULL);
    }
    free(old_list);
    scout_conf_free(&a->conf);
    a->conf = nc;
    scout_watch_set_anti_entropy_rate(a->conf.anti_entropy_rate);
    scout_policy_free(a->policy);
    a->policy = np;
    scout_agent_side_update(a);     /* the new policy writes what follows */
    scout_log(SCOUT_LOG_INFO, "agent", "reloaded %s: %d services kept, %d "
              "added, %d dropped; %d registrations", a->opts.policy_file,
              kept, added, dropped, a->nregs);
    return SCOUT_OK;

fail:
    free(svcs);
    free(regs);
    free(idx);
    free(taken);
    scout_conf_free(&nc);
    scout_policy_free(np);
    return SCOUT_ERROR;
}

