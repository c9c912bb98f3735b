/*
 * agent_view.c -- what the API may ask of the agent (api.h:
 * scout_api_view_t): its services and sessions, the snapshot's age, the
 * Lua heap, the last reload and an apply in progress, the registrations.
 * Why a file of its own: the API reads the agent only through these
 * callbacks; they answer questions and change nothing, a concern apart
 * from the wiring's start, publishes and shutdown (agent.c).
 */
#include "agent_int.h"

#include <stdio.h>
#include <string.h>

#include "zk/watch.h"

/* ---- what the API may ask (api.h: scout_api_view_t) ------------------- */

static int
view_nservices(void *ctx)
{
    return ((scout_agent_t *)ctx)->nservices;
}

static scout_service_t *
view_service(void *ctx, int i)
{
    return ((scout_agent_t *)ctx)->services[i];
}

static scout_service_t *
view_find(void *ctx, const char *name)
{
    scout_agent_t *a = ctx;
    int k = scout_agent_find_by_name(a->by_name, a->nservices, name);

    return k < 0 ? NULL : a->by_name[k];
}

static int
view_nsessions(void *ctx)
{
    return ((scout_agent_t *)ctx)->nsessions;
}

static scout_session_t *
view_session(void *ctx, int i)
{
    return ((scout_agent_t *)ctx)->sessions[i];
}

static int
view_snapshot_too_old(void *ctx, char *reason, size_t len)
{
    scout_agent_t *a = ctx;

    return a->persist != NULL
           && (scout_persist_too_old(a->persist, reason, len)
               || scout_persist_write_failing(a->persist, reason, len));
}

static double
view_snapshot_written_at(void *ctx)
{
    scout_agent_t *a = ctx;

    return a->persist != NULL
           ? (double)scout_persist_written_ms(a->persist) / 1000 : 0;
}

static size_t
view_watch_bytes(void *ctx, int i)
{
    return scout_watch_session_total(
        ((scout_agent_t *)ctx)->sessions[i]);
}

static void
view_lua(void *ctx, size_t *bytes, int *gc_pause)
{
    *bytes = scout_policy_memory(((scout_agent_t *)ctx)->policy);
    *gc_pause = scout_policy_gc_pause(((scout_agent_t *)ctx)->policy);
}

static void
view_agent(void *ctx, scout_api_agent_t *out)
{
    scout_agent_t *a = ctx;

    out->policy_file = a->opts.policy_file;
    out->zk_servers = a->conf.zk_servers;
    out->started_at = a->started_at;
    out->reloads = a->reloads;
    out->reloads_ok = a->reloads_ok;
    out->reload_at = a->reload_at;
    out->reload_ok = a->reload_ok;
    out->reload_error = a->reload_err;
    out->applying = scout_agent_applying(a, &out->apply_placed,
                                         &out->apply_of, &out->apply_slices);
}

static int
view_nregs(void *ctx)
{
    scout_agent_t *a = ctx;

    return a->nregs + a->nretiring;
}

static void
view_reg(void *ctx, int i, scout_reg_info_t *out)
{
    scout_agent_t *a = ctx;

    scout_reg_info(i < a->nregs ? a->regs[i] : a->retiring[i - a->nregs],
                   out);
}

void
scout_agent_api_view(scout_agent_t *a, scout_api_view_t *out)
{
    scout_api_view_t view = {
        .ctx = a,
        .nservices = view_nservices, .service = view_service,
        .find = view_find,
        .nsessions = view_nsessions, .session = view_session,
        .snapshot_too_old = view_snapshot_too_old,
        .snapshot_written_at = view_snapshot_written_at,
        .watch_bytes = view_watch_bytes, .lua = view_lua,
        .agent = view_agent, .nregs = view_nregs, .reg = view_reg,
    };

    *out = view;
}
