/*
 * api_agent.c -- /v1/agent, /v1/registrations and /v1/health/live.
 *
 * Liveness is apart from readiness (/v1/health) on purpose: during a
 * ZooKeeper outage scout is right to serve its last lists, marked stale,
 * and readiness says 503; a liveness probe built on that would restart a
 * healthy agent and lose the very lists it was serving.  Live means the
 * loop turned and answered this request, nothing more.
 */
#include "api/api_agent.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commit.h"                 /* generated: SCOUT_COMMIT */
#include "scout.h"
#include "zk/session.h"

static int
respond(scout_http_req_t *req, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER)
                      : NULL;
    int rc;

    json_decref(body);
    if (text == NULL)
        return scout_http_respond(req, 500, "text/plain", "out of memory\n",
                                  14);
    rc = scout_http_respond(req, 200, "application/json", text, strlen(text));
    free(text);
    return rc;
}

int
scout_api_agent(const scout_api_view_t *v, scout_http_req_t *req)
{
    scout_api_agent_t a;
    json_t *sessions = json_array(), *reload;
    double now = scout_wall_ms() / 1000.0;
    int n = v->nsessions(v->ctx);

    memset(&a, 0, sizeof(a));
    v->agent(v->ctx, &a);
    for (int i = 0; i < n; i++) {
        scout_session_t *s = v->session(v->ctx, i);
        char id[32];

        snprintf(id, sizeof(id), "0x%llx",
                 (unsigned long long)scout_session_id(s));
        json_array_append_new(sessions, json_pack("{si ss ss}", "index", i,
            "state", scout_session_state_name(scout_session_state(s)),
            "session_id", id));
    }
    reload = a.reloads == 0
        ? json_pack("{si}", "count", 0)
        : json_pack("{si sf ss ss}", "count", (int)a.reloads,
                    "at", a.reload_at,
                    "result", a.reload_ok ? "ok" : "refused",
                    "error", a.reload_error ? a.reload_error : "");
    if (a.applying && reload != NULL)   /* the one under way, if any */
        json_object_set_new(reload, "applying", json_pack("{si si si}",
            "services_placed", a.apply_placed, "services", a.apply_of,
            "slices", (int)a.apply_slices));
    return respond(req, json_pack("{ss ss si ss sf sf s{ss so} so}",
        "version", SCOUT_VERSION,
        "commit", SCOUT_COMMIT,
        "pid", (int)getpid(),
        "policy", a.policy_file ? a.policy_file : "",
        "started_at", a.started_at,
        "uptime_seconds", now - a.started_at,
        "zookeeper", "servers", a.zk_servers ? a.zk_servers : "",
                     "sessions", sessions,
        "reload", reload));
}

int
scout_api_live(scout_http_req_t *req)
{
    return respond(req, json_pack("{ss}", "status", "alive"));
}

int
scout_api_registrations(const scout_api_view_t *v, scout_http_req_t *req)
{
    json_t *out = json_array();
    int n = v->nregs(v->ctx);

    for (int i = 0; i < n; i++) {
        scout_reg_info_t r;
        json_t *flips = json_array(), *check = json_null();

        v->reg(v->ctx, i, &r);
        for (int k = 0; k < r.nflips; k++)
            json_array_append_new(flips, json_pack("{sf ss ss}",
                "at", r.flips[k]->at,
                "state", r.flips[k]->up ? "up" : "down",
                "reason", r.flips[k]->reason));
        if (r.check_kind != NULL)
            check = json_pack("{ss ss ss ss so}",
                "kind", r.check_kind,
                "target", r.check_target ? r.check_target : "",
                "state", r.healthy ? "up" : "down",
                "reason", r.check_reason ? r.check_reason : "",
                "history", flips);
        else
            json_decref(flips);
        json_array_append_new(out, json_pack("{ss so ss sb so}",
            "name", r.name,
            "node", r.node ? json_string(r.node) : json_null(),
            "state", r.state,
            "healthy", r.healthy,
            "check", check));
    }
    return respond(req, out);
}
