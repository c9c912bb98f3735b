/*
 * client.c -- `scout status|services|show|explain|pick|watch`: questions to
 * a running agent over its HTTP API, answered as tables (or --json).
 *
 * The client is a plain HTTP consumer like any other program on the host:
 * it must never need more than the API gives, so what it shows is what a
 * script or a dashboard could show too.  It runs outside the agent's loop,
 * in its own short-lived process, so blocking calls are fine here.
 */
#define _GNU_SOURCE                 /* asprintf */
#include "client/client.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/libcurl.h"
#include "policy/policy.h"
#include "scout.h"

#define DEFAULT_ADDR   "unix:/run/scout/scout.sock"   /* examples/systemd */
#define WATCH_WAIT     "5m"         /* one blocking query's wait */

static const char usage[] =
"usage: scout status                  the agent's health and every service\n"
"       scout services                every watched service\n"
"       scout show NAME               the endpoints a service publishes\n"
"       scout explain NAME            every child and why it is in or out\n"
"       scout pick NAME [--key K] [--tag T] [--arg k=v ...]\n"
"                                     one endpoint, as the selector picks\n"
"       scout watch NAME              print the list again at each change\n"
"\n"
"options:\n"
"      --api ADDR     unix:/path/to.sock or 127.0.0.1:PORT; also $SCOUT_ADDR\n"
"  -c, --config FILE  find the agent from this policy's api { listen }\n"
"      --json         print the API's JSON as it is (watch: a line each)\n"
"      --lua-dir DIR  where the scout Lua modules live (for -c)\n";

typedef struct {
    CURL *curl;
    char  base[300];            /* http://host:port or http://scout      */
    int   json;
} client_t;

typedef struct {
    char   *buf;
    size_t  len;
} body_t;

static const scout_libcurl_t *lc;  /* opened by scout_client_main */

static const char *const VERBS[] = {
    "status", "services", "show", "explain", "pick", "watch", NULL
};

int
scout_client_is_verb(const char *verb)
{
    for (int i = 0; VERBS[i] != NULL; i++)
        if (strcmp(verb, VERBS[i]) == 0)
            return 1;
    return 0;
}

static size_t
on_body(char *data, size_t size, size_t n, void *ud)
{
    body_t *b = ud;
    char *p = realloc(b->buf, b->len + size * n + 1);

    if (p == NULL)
        return 0;
    memcpy(p + b->len, data, size * n);
    b->buf = p;
    b->len += size * n;
    b->buf[b->len] = '\0';
    return size * n;
}

/* Where the agent listens: --api, $SCOUT_ADDR, the policy, the default. */
static int
find_addr(const char *api, const char *policy, const char *lua_dir,
          char *addr, size_t len)
{
    char err[SCOUT_ERR_LEN];
    scout_policy_t *p;
    scout_conf_t conf;

    if (api == NULL)
        api = getenv("SCOUT_ADDR");
    if (api != NULL && *api != '\0') {
        snprintf(addr, len, "%s", api);
        return 0;
    }
    if (policy == NULL) {
        snprintf(addr, len, "%s", DEFAULT_ADDR);
        return 0;
    }
    if ((p = scout_policy_new(lua_dir, err)) == NULL
        || scout_policy_load(p, policy, &conf, err) != SCOUT_OK) {
        fprintf(stderr, "scout: %s\n", err);
        scout_policy_free(p);
        return -1;
    }
    snprintf(addr, len, "%s", conf.api_listen != NULL ? conf.api_listen
                                                      : DEFAULT_ADDR);
    scout_conf_free(&conf);
    scout_policy_free(p);
    return 0;
}

static int
client_open(client_t *c, const char *addr)
{
    if ((c->curl = lc->easy_init()) == NULL) {
        fprintf(stderr, "scout: cannot start libcurl\n");
        return -1;
    }
    if (strncmp(addr, "unix:", 5) == 0) {
        lc->easy_setopt(c->curl, CURLOPT_UNIX_SOCKET_PATH, addr + 5);
        snprintf(c->base, sizeof(c->base), "http://scout");
    } else {
        snprintf(c->base, sizeof(c->base), "http://%s", addr);
    }
    lc->easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
    lc->easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    return 0;
}

/* GET path; the body (NUL-terminated) in *out, the status in *status.
 * Returns 0, or 3 with a message when the agent cannot be reached. */
static int
get(client_t *c, const char *path, long timeout_s, body_t *out,
    long *status, const char *addr)
{
    char url[4096];
    CURLcode rc;

    memset(out, 0, sizeof(*out));
    snprintf(url, sizeof(url), "%s%s", c->base, path);
    lc->easy_setopt(c->curl, CURLOPT_URL, url);
    lc->easy_setopt(c->curl, CURLOPT_WRITEDATA, out);
    lc->easy_setopt(c->curl, CURLOPT_TIMEOUT, timeout_s);
    if ((rc = lc->easy_perform(c->curl)) != CURLE_OK) {
        fprintf(stderr, "scout: cannot reach the agent at %s: %s\n"
                "(point at it with --api ADDR, $SCOUT_ADDR or -c POLICY)\n",
                addr, lc->easy_strerror(rc));
        free(out->buf);
        out->buf = NULL;
        return 3;
    }
    lc->easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
    if (out->buf == NULL)
        out->buf = strdup("");
    return 0;
}

/* ---- tables ------------------------------------------------------------- */

#define MAX_COLS 8

typedef struct {
    int          ncols, nrows, cap;
    const char **cells;         /* nrows * ncols, borrowed or from strs */
    char       **strs;          /* owned copies, freed with the table    */
    int          nstrs, capstrs;
} table_t;

static const char *
own(table_t *t, char *s)
{
    if (t->nstrs == t->capstrs) {
        t->capstrs = t->capstrs ? t->capstrs * 2 : 16;
        t->strs = realloc(t->strs, sizeof(*t->strs) * (size_t)t->capstrs);
        if (t->strs == NULL)
            abort();
    }
    t->strs[t->nstrs++] = s;
    return s;
}

static void
row(table_t *t, const char **cells)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->cells = realloc(t->cells,
                           sizeof(*t->cells) * (size_t)(t->cap * t->ncols));
        if (t->cells == NULL)
            abort();
    }
    for (int i = 0; i < t->ncols; i++)
        t->cells[t->nrows * t->ncols + i] = cells[i] ? cells[i] : "";
    t->nrows++;
}

static void
table_print(table_t *t)
{
    size_t w[MAX_COLS] = { 0 };

    for (int r = 0; r < t->nrows; r++)
        for (int i = 0; i < t->ncols; i++) {
            size_t n = strlen(t->cells[r * t->ncols + i]);
            if (n > w[i])
                w[i] = n;
        }
    for (int r = 0; r < t->nrows; r++) {
        for (int i = 0; i < t->ncols; i++) {
            const char *cell = t->cells[r * t->ncols + i];
            if (i == t->ncols - 1)
                printf("%s\n", cell);
            else
                printf("%-*s  ", (int)w[i], cell);
        }
    }
    for (int i = 0; i < t->nstrs; i++)
        free(t->strs[i]);
    free(t->strs);
    free(t->cells);
}

static const char *
str_of(table_t *t, json_t *v)
{
    char *s;

    if (json_is_string(v))
        return json_string_value(v);
    if (v == NULL || json_is_null(v))
        return "";
    if ((s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS))
        == NULL)
        return "?";
    return own(t, s);
}

/* meta as k=v,k=v (sorted) for one table cell */
static const char *
meta_of(table_t *t, json_t *meta)
{
    const char *k;
    json_t *v;
    size_t len = 0;
    char *buf = NULL;
    FILE *out = open_memstream(&buf, &len);
    const char **keys;
    size_t n = json_object_size(meta), i = 0;

    if (out == NULL || n == 0) {
        if (out != NULL)
            fclose(out);
        free(buf);
        return "";
    }
    keys = calloc(n, sizeof(*keys));
    json_object_foreach(meta, k, v)
        keys[i++] = k;
    for (size_t a = 1; a < n; a++)            /* few keys: insertion sort */
        for (size_t b = a; b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
            const char *x = keys[b];
            keys[b] = keys[b - 1];
            keys[b - 1] = x;
        }
    for (i = 0; i < n; i++) {
        json_t *val = json_object_get(meta, keys[i]);
        fprintf(out, "%s%s=%s", i ? "," : "", keys[i],
                json_is_string(val) ? json_string_value(val) : "?");
    }
    free(keys);
    fclose(out);
    return own(t, buf);
}

static void
print_endpoints(json_t *list)
{
    table_t t = { .ncols = 6 };
    const char *head[] = { "ID", "HOST", "PORT", "WEIGHT", "STATUS", "META" };
    size_t i;
    json_t *ep;

    row(&t, head);
    json_array_foreach(list, i, ep) {
        const char *cells[6] = {
            str_of(&t, json_object_get(ep, "id")),
            str_of(&t, json_object_get(ep, "host")),
            str_of(&t, json_object_get(ep, "port")),
            str_of(&t, json_object_get(ep, "weight")),
            str_of(&t, json_object_get(ep, "status")),
            meta_of(&t, json_object_get(ep, "meta")),
        };
        row(&t, cells);
    }
    table_print(&t);
}

static void
print_services(json_t *list)
{
    table_t t = { .ncols = 5 };
    const char *head[] = { "NAME", "STATE", "ENDPOINTS", "INDEX", "PATH" };
    size_t i;
    json_t *s;

    row(&t, head);
    json_array_foreach(list, i, s) {
        const char *cells[5] = {
            str_of(&t, json_object_get(s, "name")),
            str_of(&t, json_object_get(s, "state")),
            str_of(&t, json_object_get(s, "endpoints")),
            str_of(&t, json_object_get(s, "index")),
            str_of(&t, json_object_get(s, "path")),
        };
        row(&t, cells);
    }
    table_print(&t);
}

static void
print_explain(json_t *doc)
{
    table_t t = { .ncols = 4 };
    const char *head[] = { "ID", "VERDICT", "ADDRESS", "REASON" };
    json_t *children = json_object_get(doc, "children"), *c;
    size_t i;

    printf("%s  %s%s\n", json_string_value(json_object_get(doc, "service")),
           json_string_value(json_object_get(doc, "path")),
           json_is_true(json_object_get(doc, "protected"))
               ? "  (protected)" : "");
    row(&t, head);
    json_array_foreach(children, i, c) {
        json_t *ep = json_object_get(c, "endpoint");
        char *addr = NULL;
        const char *cells[4];

        if (ep != NULL && json_is_string(json_object_get(ep, "host"))
            && asprintf(&addr, "%s:%lld",
                        json_string_value(json_object_get(ep, "host")),
                        (long long)json_integer_value(
                            json_object_get(ep, "port"))) < 0)
            addr = NULL;
        cells[0] = str_of(&t, json_object_get(c, "id"));
        cells[1] = str_of(&t, json_object_get(c, "verdict"));
        cells[2] = addr != NULL ? own(&t, addr) : "";
        cells[3] = str_of(&t, json_object_get(c, "reason"));
        row(&t, cells);
    }
    table_print(&t);
}

/* ---- verbs ------------------------------------------------------------------ */

/* The API's error body {"error": "..."} as one line on stderr. */
static int
refused(const char *verb, long status, const char *body)
{
    json_t *doc = json_loads(body, 0, NULL);
    json_t *e = json_object_get(doc, "error");

    fprintf(stderr, "scout %s: %s (HTTP %ld)\n", verb,
            json_is_string(e) ? json_string_value(e) : body, status);
    json_decref(doc);
    return 1;
}

static char *
service_path(client_t *c, const char *prefix, const char *name)
{
    char *esc = lc->easy_escape(c->curl, name, 0), *path = NULL;

    if (esc == NULL || asprintf(&path, "%s%s", prefix, esc) < 0)
        path = NULL;
    lc->free(esc);
    return path;
}

static int
cmd_status(client_t *c, const char *addr)
{
    body_t health, list;
    long hs, ls;
    json_t *h, *l;
    int rc;

    if ((rc = get(c, "/v1/health", 10, &health, &hs, addr)) != 0)
        return rc;
    if ((rc = get(c, "/v1/services", 10, &list, &ls, addr)) != 0) {
        free(health.buf);
        return rc;
    }
    if (c->json) {
        printf("{\"health\":%s,\"services\":%s}\n", health.buf, list.buf);
    } else {
        h = json_loads(health.buf, 0, NULL);
        l = json_loads(list.buf, 0, NULL);
        printf("agent   %s\n", addr);
        if (hs == 200)
            printf("health  ok\n\n");
        else
            printf("health  %s: %s\n\n",
                   json_string_value(json_object_get(h, "status")),
                   json_string_value(json_object_get(h, "reason")));
        if (json_is_array(l))
            print_services(l);
        json_decref(h);
        json_decref(l);
    }
    free(health.buf);
    free(list.buf);
    return hs == 200 ? 0 : 1;
}

/* services, show, explain, pick: one GET, a table or the JSON. */
static int
cmd_one(client_t *c, const char *verb, const char *path, const char *addr)
{
    body_t b;
    long status;
    json_t *doc;
    int rc;

    if ((rc = get(c, path, 30, &b, &status, addr)) != 0)
        return rc;
    if (status != 200) {
        rc = refused(verb, status, b.buf);
        free(b.buf);
        return rc;
    }
    if (c->json) {
        fputs(b.buf, stdout);
        if (b.len == 0 || b.buf[b.len - 1] != '\n')
            putchar('\n');
        free(b.buf);
        return 0;
    }
    doc = json_loads(b.buf, 0, NULL);
    if (strcmp(verb, "services") == 0)
        print_services(doc);
    else if (strcmp(verb, "show") == 0)
        print_endpoints(doc);
    else if (strcmp(verb, "explain") == 0)
        print_explain(doc);
    else                                        /* pick */
        printf("%s:%lld  %s\n",
               json_string_value(json_object_get(doc, "host")),
               (long long)json_integer_value(json_object_get(doc, "port")),
               json_string_value(json_object_get(doc, "id")));
    json_decref(doc);
    free(b.buf);
    return 0;
}

/* Consul's blocking queries: ask with the last index, print on a change. */
static int
cmd_watch(client_t *c, const char *name, const char *addr)
{
    char *base = service_path(c, "/v1/services/", name), path[4096];
    unsigned long long index = 0;
    int rc = 0;

    if (base == NULL)
        return 1;
    for (;;) {
        body_t b;
        long status;
        struct curl_header *h;
        unsigned long long now = 0;

        snprintf(path, sizeof(path), "%s?index=%llu&wait=%s", base, index,
                 WATCH_WAIT);
        if ((rc = get(c, path, 400, &b, &status, addr)) != 0)
            break;
        if (status != 200) {
            rc = refused("watch", status, b.buf);
            free(b.buf);
            break;
        }
        if (lc->easy_header(c->curl, "X-Scout-Index", 0, CURLH_HEADER, -1,
                             &h) == CURLHE_OK)
            now = strtoull(h->value, NULL, 10);
        if (now != index) {
            index = now;
            if (c->json) {
                printf("{\"index\":%llu,\"endpoints\":%s}\n", index, b.buf);
            } else {
                json_t *doc = json_loads(b.buf, 0, NULL);
                printf("-- %s  index %llu\n", name, index);
                print_endpoints(doc);
                json_decref(doc);
            }
            fflush(stdout);
        }
        free(b.buf);
    }
    free(base);
    return rc;
}

int
scout_client_main(const char *verb, int argc, char **argv)
{
    enum { OPT_API = 256, OPT_JSON, OPT_KEY, OPT_TAG, OPT_ARG, OPT_LUA };
    static const struct option longopts[] = {
        { "api", required_argument, NULL, OPT_API },
        { "config", required_argument, NULL, 'c' },
        { "json", no_argument, NULL, OPT_JSON },
        { "key", required_argument, NULL, OPT_KEY },
        { "tag", required_argument, NULL, OPT_TAG },
        { "arg", required_argument, NULL, OPT_ARG },
        { "lua-dir", required_argument, NULL, OPT_LUA },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    const char *api = NULL, *policy = NULL, *lua_dir = NULL, *name = NULL;
    char addr[1024], query[2048] = "", *path = NULL;
    client_t c = { 0 };
    char err[SCOUT_ERR_LEN];
    int opt, rc;

    if ((lc = scout_libcurl_open(err)) == NULL) {
        fprintf(stderr, "scout %s: %s\n", verb, err);
        return 3;
    }
    while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        char *esc, *eq;
        size_t used = strlen(query);

        switch (opt) {
        case OPT_API: api = optarg; break;
        case 'c': policy = optarg; break;
        case OPT_JSON: c.json = 1; break;
        case OPT_LUA: lua_dir = optarg; break;
        case OPT_KEY: case OPT_TAG: case OPT_ARG:
            /* --key K and --tag T are the routing context's key and tag;
             * --arg k=v any other of its arguments */
            eq = opt == OPT_ARG ? strchr(optarg, '=') : NULL;
            if (opt == OPT_ARG && eq == NULL) {
                fprintf(stderr, "scout pick: --arg wants k=v\n");
                return 2;
            }
            esc = lc->escape(eq ? eq + 1 : optarg, 0);
            snprintf(query + used, sizeof(query) - used, "%s%.*s=%s",
                     used ? "&" : "?",
                     eq ? (int)(eq - optarg) : 3,
                     eq ? optarg : opt == OPT_KEY ? "key" : "tag", esc);
            lc->free(esc);
            break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (strcmp(verb, "status") != 0 && strcmp(verb, "services") != 0) {
        if (optind >= argc) {
            fprintf(stderr, "scout %s: which service?\n%s", verb, usage);
            return 2;
        }
        name = argv[optind];
    }
    if (find_addr(api, policy, lua_dir, addr, sizeof(addr)) != 0)
        return 2;
    lc->global_init(CURL_GLOBAL_DEFAULT);
    if (client_open(&c, addr) != 0)
        return 3;
    if (strcmp(verb, "status") == 0) {
        rc = cmd_status(&c, addr);
    } else if (strcmp(verb, "services") == 0) {
        rc = cmd_one(&c, verb, "/v1/services", addr);
    } else if (strcmp(verb, "watch") == 0) {
        rc = cmd_watch(&c, name, addr);
    } else {
        const char *prefix = strcmp(verb, "show") == 0 ? "/v1/services/"
                             : strcmp(verb, "explain") == 0 ? "/v1/explain/"
                             : "/v1/pick/";
        char *full = NULL;

        path = service_path(&c, prefix, name);
        if (path == NULL || asprintf(&full, "%s%s", path,
                                     strcmp(verb, "pick") == 0 ? query : "")
                            < 0)
            full = NULL;
        rc = full != NULL ? cmd_one(&c, verb, full, addr) : 1;
        free(full);
    }
    free(path);
    lc->easy_cleanup(c.curl);
    lc->global_cleanup();
    return rc;
}
