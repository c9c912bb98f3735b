/*
 * metrics.c -- GET /metrics: Prometheus text exposition (format 0.0.4),
 * checked by `promtool check metrics` in the tests.
 *
 * Counters are defined once in stats.h; this file only decides how each is
 * spelled for Prometheus: counters of one kind that differ by a dimension
 * are one family with a label (scout_zk_requests_total{op="data"}), and
 * durations are in seconds, Prometheus's base unit, whatever the agent
 * counts internally.  Process metrics use the names every Prometheus client
 * library uses, so the usual dashboards work unchanged.  It must never
 * hold the loop for a scrape: the per-service families, the part that
 * grows with the registry, are rendered in slices (see below).
 */
#include "api/metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <luajit.h>
#include <zookeeper/zookeeper_version.h>

#include "commit.h"                 /* generated: SCOUT_COMMIT */
#include "loop.h"
#include "scout.h"
#include "stats.h"
#include "zk/watch.h"

/* How a stats.h counter is exposed, where not simply as scout_NAME_total
 * with its own help text.  Members of one family must be adjacent in
 * stats.h. */
static const struct spelling {
    const char *member;
    const char *family;
    const char *label;              /* NULL: none */
    double      scale;
    const char *help;               /* the family's; NULL: the member's */
} SPELLINGS[] = {
    { "zk_requests_children", "zk_requests", "op=\"children\"", 1,
      "requests sent to ZooKeeper, by operation" },
    { "zk_requests_data", "zk_requests", "op=\"data\"", 1, NULL },
    { "zk_requests_exists", "zk_requests", "op=\"exists\"", 1, NULL },
    { "hook_microseconds", "hook_seconds", NULL, 1e-6,
      "time spent in Lua hook calls" },
};

static const struct spelling *
spelling_of(const char *member)
{
    for (size_t i = 0; i < sizeof(SPELLINGS) / sizeof(SPELLINGS[0]); i++)
        if (strcmp(SPELLINGS[i].member, member) == 0)
            return &SPELLINGS[i];
    return NULL;
}

static void
global_counters(FILE *out)
{
    static const struct { const char *name, *help; } list[] = {
#define X(name, help) { #name, help },
        SCOUT_GLOBAL_STATS(X)
#undef X
    };
    const uint64_t values[] = {
#define X(name, help) scout_stats.name,
        SCOUT_GLOBAL_STATS(X)
#undef X
    };
    const char *family = "";

    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++) {
        const struct spelling *sp = spelling_of(list[i].name);
        const char *fam = sp ? sp->family : list[i].name;
        double scale = sp ? sp->scale : 1;

        if (strcmp(fam, family) != 0)
            fprintf(out, "# HELP scout_%s_total %s\n"
                         "# TYPE scout_%s_total counter\n",
                    fam, sp && sp->help ? sp->help : list[i].help, fam);
        family = fam;
        if (scale == 1)
            fprintf(out, "scout_%s_total%s%s%s %llu\n", fam,
                    sp && sp->label ? "{" : "", sp && sp->label ? sp->label
                                                                : "",
                    sp && sp->label ? "}" : "",
                    (unsigned long long)values[i]);
        else
            fprintf(out, "scout_%s_total %.6f\n", fam,
                    (double)values[i] * scale);
    }
}

/* ---- the per-service families, rendered in slices ---------------------
 *
 * At 10,000 services these are ~130,000 lines: rendered in one go (an
 * fprintf per line) a scrape held the loop 100-300 ms.  So they are built
 * service by service, a slice at a time under a deadline, into one buffer
 * per family (the format wants a family's lines together), and joined when
 * the last service is done; sliced.c runs the slices from an idle watcher, so
 * ZooKeeper and other clients are served in between.  A line is a memcpy of
 * the metric name and of the service's label set, rendered once per
 * service, plus a hand-formatted integer: no printf on the hot path.
 * Values may come from slightly different moments across services, which
 * Prometheus accepts; a reload in the middle restarts the render, so a
 * scrape never lists a service twice or misses one. */

typedef struct {
    char   *p;
    size_t  len, cap;
    int     oom;
} mbuf_t;

static void
mb_grow(mbuf_t *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 4096;
    char *p;

    while (cap < b->len + more)
        cap *= 2;
    if ((p = realloc(b->p, cap)) == NULL) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static inline void
mb_put(mbuf_t *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        mb_grow(b, n);
        if (b->oom)
            return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

#define MB_LIT(b, lit) mb_put((b), lit, sizeof(lit) - 1)

static inline void
mb_u64(mbuf_t *b, uint64_t v)
{
    char d[24], *e = d + sizeof(d), *q = e;

    do
        *--q = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    mb_put(b, q, (size_t)(e - q));
}

/* Label values are escaped as the exposition format asks: \\, \" and \n;
 * a name that needs none (the usual case) is one memcpy. */
static void
mb_label(mbuf_t *b, const char *v)
{
    for (;;) {
        size_t n = strcspn(v, "\\\"\n");

        mb_put(b, v, n);
        v += n;
        if (*v == '\0')
            return;
        if (*v == '\n')
            MB_LIT(b, "\\n");
        else {
            mb_put(b, "\\", 1);
            mb_put(b, v, 1);
        }
        v++;
    }
}

static const char *const SVC_HEAD[] = {
#define X(name, help) "# HELP scout_service_" #name "_total " help "\n"      \
                      "# TYPE scout_service_" #name "_total counter\n",
    SCOUT_SERVICE_STATS(X)
#undef X
    "# HELP scout_service_endpoints endpoints published\n"
    "# TYPE scout_service_endpoints gauge\n",
    "# HELP scout_service_staleness_seconds seconds since the list was last "
    "confirmed by ZooKeeper (0 while synced)\n"
    "# TYPE scout_service_staleness_seconds gauge\n",
    "# HELP scout_service_protected 1 while protection holds back a drop\n"
    "# TYPE scout_service_protected gauge\n",
    "# HELP scout_rules_invalid_total rules in a service's source paths "
    "refused (skipped whole)\n"
    "# TYPE scout_rules_invalid_total counter\n",
};
#define NFAM ((int)(sizeof(SVC_HEAD) / sizeof(SVC_HEAD[0])))
#define NCOUNTERS (NFAM - 4)

static const struct { const char *s; size_t n; } SVC_NAME[] = {
#define X(name, help) { "scout_service_" #name "_total{service=\"",          \
                        sizeof("scout_service_" #name "_total{service=\"") - 1 },
    SCOUT_SERVICE_STATS(X)
#undef X
#define N(lit) { lit, sizeof(lit) - 1 },
    N("scout_service_endpoints{service=\"")
    N("scout_service_staleness_seconds{service=\"")
    N("scout_service_protected{service=\"")
    N("scout_rules_invalid_total{service=\"")
#undef N
};

struct scout_api_metrics_s {
    const scout_api_view_t *v;
    int       n;                    /* services when the render began */
    int       fam, next;            /* the family, the service, to render */
    unsigned  reloads;              /* a reload in between restarts */
    size_t    head;                 /* bytes before the service families */
    mbuf_t    out;
};

/* The last exposition's size: the next one's buffer is allocated once. */
static size_t last_len;

unsigned
scout_api_metrics_reloads(const scout_api_view_t *v)
{
    scout_api_agent_t a;

    memset(&a, 0, sizeof(a));
    v->agent(v->ctx, &a);
    return a.reloads;
}

static void
restart(scout_api_metrics_t *m)
{
    m->out.len = m->head;
    m->n = m->v->nservices(m->v->ctx);
    m->reloads = scout_api_metrics_reloads(m->v);
    m->fam = m->next = 0;
}

/* The fprintf'd parts (small, however big the registry) into b. */
static void
put_stream(mbuf_t *b, void (*fn)(FILE *, const void *), const void *arg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (f == NULL) {
        b->oom = 1;
        return;
    }
    fn(f, arg);
    if (fclose(f) != 0)
        b->oom = 1;
    else
        mb_put(b, buf, len);
    free(buf);
}

static void
global_counters_of(FILE *out, const void *unused)
{
    (void)unused;
    global_counters(out);
}

scout_api_metrics_t *
scout_api_metrics_begin(const scout_api_view_t *v)
{
    scout_api_metrics_t *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return NULL;
    m->v = v;
    mb_grow(&m->out, last_len + last_len / 8);
    put_stream(&m->out, global_counters_of, NULL);
    if (m->out.oom) {
        scout_api_metrics_free(m);
        return NULL;
    }
    m->head = m->out.len;
    restart(m);
    return m;
}

void
scout_api_metrics_free(scout_api_metrics_t *m)
{
    if (m == NULL)
        return;
    free(m->out.p);
    free(m);
}

/* One service's line(s) of family k. */
static void
one_line(mbuf_t *b, int k, scout_service_t *s)
{
    char num[64];
    int len;

    if (k == NFAM - 1) {
        for (int j = 0; j < scout_service_nsources(s); j++) {
            mb_put(b, SVC_NAME[k].s, SVC_NAME[k].n);
            mb_label(b, scout_service_name(s));
            MB_LIT(b, "\",source=\"");
            mb_label(b, scout_service_source_key(s, j));
            MB_LIT(b, "\"} ");
            mb_u64(b, scout_service_source_invalid(s, j));
            MB_LIT(b, "\n");
        }
        return;
    }
    mb_put(b, SVC_NAME[k].s, SVC_NAME[k].n);
    mb_label(b, scout_service_name(s));
    if (k < NCOUNTERS) {
        const scout_service_stats_t *st = scout_service_stats(s);
        const uint64_t val[] = {
#define X(name, help) st->name,
            SCOUT_SERVICE_STATS(X)
#undef X
        };

        MB_LIT(b, "\"} ");
        mb_u64(b, val[k]);
        MB_LIT(b, "\n");
    } else if (k == NCOUNTERS) {
        MB_LIT(b, "\"} ");
        mb_u64(b, scout_service_count(s));
        MB_LIT(b, "\n");
    } else {
        len = k == NCOUNTERS + 1
            ? snprintf(num, sizeof(num), "\"} %.3f\n",
                       scout_service_staleness(s))
            : snprintf(num, sizeof(num), "\"} %d\n",
                       scout_service_protected(s));
        mb_put(b, num, (size_t)len);
    }
}

int
scout_api_metrics_step(scout_api_metrics_t *m, int64_t deadline_ns)
{
    const scout_api_view_t *v = m->v;
    unsigned done = 0;

    if (v->nservices(v->ctx) != m->n || scout_api_metrics_reloads(v) != m->reloads)
        restart(m);
    for (; m->fam < NFAM; m->fam++, m->next = 0) {
        if (m->next == 0)
            mb_put(&m->out, SVC_HEAD[m->fam], strlen(SVC_HEAD[m->fam]));
        while (m->next < m->n) {
            one_line(&m->out, m->fam, v->service(v->ctx, m->next++));
            /* a clock read per 64 lines: well under 1% of their cost */
            if ((++done & 63) == 0 && m->next < m->n
                && scout_now_ns() >= deadline_ns)
                return m->out.oom ? SCOUT_ERROR : SCOUT_AGAIN;
        }
    }
    return m->out.oom ? SCOUT_ERROR : SCOUT_OK;
}

/* Label values in the fprintf'd families below. */
static void
label(FILE *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            fputc('\\', out);
        if (*v == '\n') {
            fputs("\\n", out);
            continue;
        }
        fputc(*v, out);
    }
}

static void
session_metrics(FILE *out, const scout_api_view_t *v)
{
    int n = v->nsessions(v->ctx);

    fprintf(out, "# HELP scout_session_connected 1 while the ZooKeeper "
                 "session is connected\n# TYPE scout_session_connected gauge\n");
    for (int i = 0; i < n; i++)
        fprintf(out, "scout_session_connected{session=\"%d\"} %d\n", i,
                scout_session_state(v->session(v->ctx, i))
                    == SCOUT_SESSION_CONNECTED);
    fprintf(out, "# HELP scout_session_reconnect_loop 1 from a reconnect "
                 "loop's end until the new session is stable\n"
                 "# TYPE scout_session_reconnect_loop gauge\n");
    for (int i = 0; i < n; i++)
        fprintf(out, "scout_session_reconnect_loop{session=\"%d\"} %d\n", i,
                scout_session_looping(v->session(v->ctx, i)));
    fprintf(out, "# HELP scout_session_watch_bytes watched path bytes a "
                 "reconnect re-sends (keep well under 1 MB)\n"
                 "# TYPE scout_session_watch_bytes gauge\n");
    for (int i = 0; i < n; i++)
        fprintf(out, "scout_session_watch_bytes{session=\"%d\"} %zu\n", i,
                v->watch_bytes(v->ctx, i));
}

static void
agent_metrics(FILE *out, const scout_api_view_t *v, unsigned conns,
              unsigned parked)
{
    scout_api_agent_t a;
    int n = v->nregs(v->ctx), gc_pause;
    size_t lua_bytes;

    memset(&a, 0, sizeof(a));
    v->agent(v->ctx, &a);
    fprintf(out, "# HELP scout_build_info the running build; always 1\n"
                 "# TYPE scout_build_info gauge\n"
                 "scout_build_info{version=\"%s\",commit=\"%s\","
                 "luajit=\"%s\",zookeeper_client=\"%s\"} 1\n",
            SCOUT_VERSION, SCOUT_COMMIT, LUAJIT_VERSION, ZOO_VERSION);
    fprintf(out, "# HELP scout_reloads_total policy reloads (SIGHUP) by "
                 "result\n# TYPE scout_reloads_total counter\n"
                 "scout_reloads_total{result=\"ok\"} %u\n"
                 "scout_reloads_total{result=\"refused\"} %u\n",
            a.reloads_ok, a.reloads - a.reloads_ok);
    fprintf(out, "# HELP scout_reload_last_success 1 if the last reload "
                 "took (or none was tried), 0 if it was refused\n"
                 "# TYPE scout_reload_last_success gauge\n"
                 "scout_reload_last_success %d\n",
            a.reloads == 0 || a.reload_ok);
    fprintf(out, "# HELP scout_registration_up 1 while the registration's "
                 "node is in ZooKeeper\n# TYPE scout_registration_up gauge\n");
    for (int i = 0; i < n; i++) {
        scout_reg_info_t r;

        v->reg(v->ctx, i, &r);
        fputs("scout_registration_up{registration=\"", out);
        label(out, r.name);
        fprintf(out, "\"} %d\n", r.node != NULL);
    }
    fprintf(out, "# HELP scout_registration_healthy 1 while the "
                 "registration's check says up (or it has none)\n"
                 "# TYPE scout_registration_healthy gauge\n");
    for (int i = 0; i < n; i++) {
        scout_reg_info_t r;

        v->reg(v->ctx, i, &r);
        fputs("scout_registration_healthy{registration=\"", out);
        label(out, r.name);
        fprintf(out, "\"} %d\n", r.healthy);
    }
    fprintf(out, "# HELP scout_http_connections open API connections\n"
                 "# TYPE scout_http_connections gauge\n"
                 "scout_http_connections %u\n"
                 "# HELP scout_http_parked_queries blocking queries waiting "
                 "for a change\n# TYPE scout_http_parked_queries gauge\n"
                 "scout_http_parked_queries %u\n", conns, parked);
    fprintf(out, "# HELP scout_snapshot_last_write_timestamp_seconds when "
                 "the disk snapshot was last written (0: not yet)\n"
                 "# TYPE scout_snapshot_last_write_timestamp_seconds gauge\n"
                 "scout_snapshot_last_write_timestamp_seconds %.3f\n",
            v->snapshot_written_at(v->ctx));
    v->lua(v->ctx, &lua_bytes, &gc_pause);
    fprintf(out, "# HELP scout_lua_memory_bytes bytes held by the policy's "
                 "Lua VM\n# TYPE scout_lua_memory_bytes gauge\n"
                 "scout_lua_memory_bytes %zu\n"
                 "# HELP scout_lua_gc_pause the Lua collector's pause: for "
                 "a heap past 4 MB 120 until the initial sync is over, then "
                 "100 (eager); 200 (a cycle when the heap doubles) below\n"
                 "# TYPE scout_lua_gc_pause gauge\n"
                 "scout_lua_gc_pause %d\n", lua_bytes, gc_pause);
    fprintf(out, "# HELP scout_anti_entropy_period_seconds how long one "
                 "anti-entropy pass over every path takes: the period, or "
                 "longer when the rate stretches it (0: off)\n"
                 "# TYPE scout_anti_entropy_period_seconds gauge\n"
                 "scout_anti_entropy_period_seconds %.3f\n",
            scout_watch_anti_entropy_period());
    fprintf(out, "# HELP scout_anti_entropy_held_total times due anti-entropy "
                 "checks were held back because reads waited for the window "
                 "or filled it\n"
                 "# TYPE scout_anti_entropy_held_total counter\n"
                 "scout_anti_entropy_held_total %" PRIu64 "\n",
            scout_watch_anti_entropy_held());
    fprintf(out, "# HELP scout_zk_reads_in_flight reads (child lists, data) "
                 "sent and not yet answered, all sessions together "
                 "(bounded at %d)\n"
                 "# TYPE scout_zk_reads_in_flight gauge\n"
                 "scout_zk_reads_in_flight %zu\n"
                 "# HELP scout_zk_reads_in_flight_max the most reads ever "
                 "in flight at once\n"
                 "# TYPE scout_zk_reads_in_flight_max gauge\n"
                 "scout_zk_reads_in_flight_max %zu\n"
                 "# HELP scout_zk_reads_waiting paths whose reads wait for "
                 "room in the window\n"
                 "# TYPE scout_zk_reads_waiting gauge\n"
                 "scout_zk_reads_waiting %zu\n", SCOUT_WATCH_READ_WINDOW,
            scout_watch_reads_in_flight(), scout_watch_reads_in_flight_max(),
            scout_watch_reads_waiting());
}

/* process_* as the Prometheus client libraries define them, from /proc. */
static void
process_metrics(FILE *out)
{
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0, btime = 0;
    long long rss = 0;
    char buf[1024], *p;
    FILE *f;
    DIR *d;
    int fds = 0;
    struct rlimit rl;

    if ((f = fopen("/proc/self/stat", "r")) != NULL) {
        /* the command name may hold spaces: fields start after its ')' */
        if (fgets(buf, sizeof(buf), f) != NULL
            && (p = strrchr(buf, ')')) != NULL)
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                   "%llu %llu %*d %*d %*d %*d %*d %*d %llu %llu %lld",
                   &utime, &stime, &start, &vsize, &rss);
        fclose(f);
    }
    if ((f = fopen("/proc/stat", "r")) != NULL) {
        while (fgets(buf, sizeof(buf), f) != NULL)
            if (sscanf(buf, "btime %llu", &btime) == 1)
                break;
        fclose(f);
    }
    if ((d = opendir("/proc/self/fd")) != NULL) {
        while (readdir(d) != NULL)
            fds++;
        closedir(d);
        fds -= 3;                   /* ".", ".." and this directory's fd */
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    fprintf(out, "# HELP process_cpu_seconds_total user and system CPU time "
                 "spent\n# TYPE process_cpu_seconds_total counter\n"
                 "process_cpu_seconds_total %.2f\n"
                 "# HELP process_resident_memory_bytes resident memory size\n"
                 "# TYPE process_resident_memory_bytes gauge\n"
                 "process_resident_memory_bytes %lld\n"
                 "# HELP process_virtual_memory_bytes virtual memory size\n"
                 "# TYPE process_virtual_memory_bytes gauge\n"
                 "process_virtual_memory_bytes %llu\n"
                 "# HELP process_start_time_seconds start time since the "
                 "epoch\n# TYPE process_start_time_seconds gauge\n"
                 "process_start_time_seconds %.2f\n"
                 "# HELP process_open_fds open file descriptors\n"
                 "# TYPE process_open_fds gauge\n"
                 "process_open_fds %d\n"
                 "# HELP process_max_fds the soft limit on file descriptors\n"
                 "# TYPE process_max_fds gauge\n"
                 "process_max_fds %llu\n",
            (double)(utime + stime) / (double)tick, rss * page, vsize,
            (double)btime + (double)start / (double)tick, fds,
            (unsigned long long)rl.rlim_cur);
}

/* How long each loop iteration's callbacks held the loop (loop.c). */
static void
loop_metrics(FILE *out)
{
    static const char *const le[] = {
#define X(b) #b,
        SCOUT_LOOP_STALL_BUCKETS(X)
#undef X
    };

    fprintf(out, "# HELP scout_loop_stall_seconds how long each loop "
                 "iteration's callbacks held the loop\n"
                 "# TYPE scout_loop_stall_seconds histogram\n");
    for (size_t i = 0; i < sizeof(le) / sizeof(le[0]); i++)
        fprintf(out, "scout_loop_stall_seconds_bucket{le=\"%s\"} %llu\n",
                le[i], (unsigned long long)scout_loop_stats.bucket[i]);
    fprintf(out, "scout_loop_stall_seconds_bucket{le=\"+Inf\"} %llu\n"
                 "scout_loop_stall_seconds_sum %.6f\n"
                 "scout_loop_stall_seconds_count %llu\n",
            (unsigned long long)scout_loop_stats.count, scout_loop_stats.sum,
            (unsigned long long)scout_loop_stats.count);
    fprintf(out, "# HELP scout_loop_stall_max_seconds the longest loop "
                 "iteration since the start\n"
                 "# TYPE scout_loop_stall_max_seconds gauge\n"
                 "scout_loop_stall_max_seconds %.6f\n", scout_loop_stats.max);
}

struct tail_args {
    const scout_api_view_t *v;
    unsigned conns, parked;
};

static void
tail_of(FILE *out, const void *arg)
{
    const struct tail_args *t = arg;

    session_metrics(out, t->v);
    agent_metrics(out, t->v, t->conns, t->parked);
    loop_metrics(out);
    process_metrics(out);
}

char *
scout_api_metrics_finish(scout_api_metrics_t *m, unsigned http_conns,
                         unsigned parked, size_t *len)
{
    struct tail_args t = { m->v, http_conns, parked };
    char *buf;

    put_stream(&m->out, tail_of, &t);
    if (m->out.oom) {
        scout_api_metrics_free(m);
        return NULL;
    }
    buf = m->out.p;
    *len = last_len = m->out.len;
    free(m);
    return buf;
}
