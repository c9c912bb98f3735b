/*
 * api.c -- routes of the HTTP API.
 *
 *   GET /v1/services        every watched service, its count, index, state
 *   GET /v1/services/NAME   the published list; X-Scout-Index header
 *   GET /v1/health          200 when connected and every service synced
 *   GET /metrics            Prometheus text, generated from stats.h
 *
 * Responses are rendered per request from the agent's current state; a
 * service's endpoint list is already JSON (rendered once per publish), so
 * the hot request costs one copy.
 */
#include "api.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "http.h"
#include "log.h"
#include "scout.h"
#include "stats.h"

struct scout_api_s {
    scout_http_t  *http;
    scout_agent_t *agent;
};

static const char *const JSON_TYPE = "application/json";

static int
respond_json(scout_http_req_t *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    int rc;

    json_decref(body);
    if (text == NULL)
        return scout_http_respond(req, 500, "text/plain", "out of memory\n",
                                  14);
    rc = scout_http_respond(req, status, JSON_TYPE, text, strlen(text));
    free(text);
    return rc;
}

static int
respond_error(scout_http_req_t *req, int status, const char *msg)
{
    return respond_json(req, status, json_pack("{ss}", "error", msg));
}

static int
list_services(scout_api_t *api, scout_http_req_t *req)
{
    json_t *arr = json_array();

    for (int i = 0; i < scout_agent_nservices(api->agent); i++) {
        scout_service_t *s = scout_agent_service(api->agent, i);

        json_array_append_new(arr, json_pack("{ss ss si sI ss}",
            "name", scout_service_name(s),
            "path", scout_service_path(s),
            "endpoints", (int)scout_service_count(s),
            "index", (json_int_t)scout_service_index(s),
            "state", scout_service_state(s)));
    }
    return respond_json(req, 200, arr);
}

static int
get_service(scout_api_t *api, scout_http_req_t *req, const char *raw_name)
{
    char name[1024], index[32];
    scout_service_t *s;
    const char *body;
    size_t len;

    if (scout_http_unescape(raw_name, strlen(raw_name), name, sizeof(name))
        < 0)
        return respond_error(req, 400, "bad service name");
    s = scout_agent_find(api->agent, name);
    if (s == NULL)
        return respond_error(req, 404, "no such service");
    snprintf(index, sizeof(index), "%llu",
             (unsigned long long)scout_service_index(s));
    scout_http_add_header(req, "X-Scout-Index", index);
    scout_http_add_header(req, "X-Scout-State", scout_service_state(s));
    if ((body = scout_service_json(s, &len)) == NULL)
        return respond_error(req, 500, "out of memory");
    return scout_http_respond(req, 200, JSON_TYPE, body, len);
}

static int
health(scout_api_t *api, scout_http_req_t *req)
{
    char reason[512] = "";

    for (int i = 0; i < scout_agent_nsessions(api->agent); i++) {
        scout_session_state_t st =
            scout_session_state(scout_agent_session(api->agent, i));
        if (st != SCOUT_SESSION_CONNECTED) {
            snprintf(reason, sizeof(reason), "ZooKeeper session %d %s", i,
                     scout_session_state_name(st));
            break;
        }
    }
    if (reason[0] == '\0') {
        for (int i = 0; i < scout_agent_nservices(api->agent); i++) {
            scout_service_t *s = scout_agent_service(api->agent, i);
            const char *e = scout_service_last_error(s);

            if (!scout_service_synced(s)) {
                snprintf(reason, sizeof(reason), "service %s is %s%s%s",
                         scout_service_name(s), scout_service_state(s),
                         *e ? ": " : "", e);
                break;
            }
        }
    }
    if (reason[0] != '\0')
        return respond_json(req, 503, json_pack("{ss ss}", "status",
                                                "unavailable", "reason",
                                                reason));
    return respond_json(req, 200, json_pack("{ss si}", "status", "ok",
                                            "services",
                                            scout_agent_nservices(api->agent)));
}

/* Prometheus text exposition; names and help come from stats.h. */
static int
metrics(scout_api_t *api, scout_http_req_t *req)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    int n = scout_agent_nservices(api->agent), rc;

    if (out == NULL)
        return respond_error(req, 500, "out of memory");
#define X(name, help)                                                      \
    fprintf(out, "# HELP scout_" #name "_total " help "\n"                 \
                 "# TYPE scout_" #name "_total counter\n"                  \
                 "scout_" #name "_total %llu\n",                           \
            (unsigned long long)scout_stats.name);
    SCOUT_GLOBAL_STATS(X)
#undef X
#define X(name, help)                                                      \
    fprintf(out, "# HELP scout_service_" #name "_total " help "\n"         \
                 "# TYPE scout_service_" #name "_total counter\n");        \
    for (int i = 0; i < n; i++) {                                          \
        scout_service_t *s = scout_agent_service(api->agent, i);           \
        fprintf(out, "scout_service_" #name "_total{service=\"%s\"} %llu\n",\
                scout_service_name(s),                                     \
                (unsigned long long)scout_service_stats(s)->name);         \
    }
    SCOUT_SERVICE_STATS(X)
#undef X
    fprintf(out, "# HELP scout_service_endpoints endpoints published\n"
                 "# TYPE scout_service_endpoints gauge\n");
    for (int i = 0; i < n; i++) {
        scout_service_t *s = scout_agent_service(api->agent, i);
        fprintf(out, "scout_service_endpoints{service=\"%s\"} %u\n",
                scout_service_name(s), scout_service_count(s));
    }
    fprintf(out, "# HELP scout_service_protected 1 while protection holds "
                 "back a drop\n# TYPE scout_service_protected gauge\n");
    for (int i = 0; i < n; i++) {
        scout_service_t *s = scout_agent_service(api->agent, i);
        fprintf(out, "scout_service_protected{service=\"%s\"} %d\n",
                scout_service_name(s), scout_service_protected(s));
    }
    fprintf(out, "# HELP scout_session_connected 1 while the ZooKeeper "
                 "session is connected\n# TYPE scout_session_connected gauge\n");
    for (int i = 0; i < scout_agent_nsessions(api->agent); i++)
        fprintf(out, "scout_session_connected{session=\"%d\"} %d\n", i,
                scout_session_state(scout_agent_session(api->agent, i))
                    == SCOUT_SESSION_CONNECTED);
    fprintf(out, "# HELP scout_session_watch_bytes watched path bytes a "
                 "reconnect re-sends (keep well under 1 MB)\n"
                 "# TYPE scout_session_watch_bytes gauge\n");
    for (int i = 0; i < scout_agent_nsessions(api->agent); i++)
        fprintf(out, "scout_session_watch_bytes{session=\"%d\"} %zu\n", i,
                scout_agent_watch_bytes(api->agent, i));
    fclose(out);
    rc = scout_http_respond(req, 200, "text/plain; version=0.0.4", buf, len);
    free(buf);
    return rc;
}

static int
handle(void *ud, scout_http_req_t *req)
{
    scout_api_t *api = ud;
    const char *path = scout_http_req_path(req);

    if (strcmp(scout_http_req_method(req), "GET") != 0) {
        scout_http_add_header(req, "Allow", "GET");
        return respond_error(req, 405, "only GET is supported");
    }
    if (strcmp(path, "/v1/services") == 0)
        return list_services(api, req);
    if (strncmp(path, "/v1/services/", 13) == 0 && path[13] != '\0'
        && strchr(path + 13, '/') == NULL)
        return get_service(api, req, path + 13);
    if (strcmp(path, "/v1/health") == 0)
        return health(api, req);
    if (strcmp(path, "/metrics") == 0)
        return metrics(api, req);
    return respond_error(req, 404, "not found");
}

scout_api_t *
scout_api_new(struct ev_loop *loop, struct scout_agent_s *agent,
              const char *listen, char *err)
{
    scout_api_t *api = calloc(1, sizeof(*api));

    if (api == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return NULL;
    }
    api->agent = agent;
    api->http = scout_http_new(loop, listen, handle, api, err);
    if (api->http == NULL) {
        free(api);
        return NULL;
    }
    return api;
}

void
scout_api_free(scout_api_t *api)
{
    if (api == NULL)
        return;
    scout_http_free(api->http);
    free(api);
}
