/*
 * metrics.c -- GET /metrics: Prometheus text exposition (format 0.0.4),
 * checked by `promtool check metrics` in the tests.
 *
 * Counters are defined once in stats.h; this file only decides how each is
 * spelled for Prometheus: counters of one kind that differ by a dimension
 * are one family with a label (scout_zk_requests_total{op="data"}), and
 * durations are in seconds, Prometheus's base unit, whatever the agent
 * counts internally.  Process metrics use the names every Prometheus client
 * library uses, so the usual dashboards work unchanged.
 */
#include "api/metrics.h"

#include <dirent.h>
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

/* Label values are escaped as the exposition format asks: \\, \" and \n. */
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
service_metrics(FILE *out, const scout_api_view_t *v)
{
    int n = v->nservices(v->ctx);

#define X(name, help)                                                      \
    fprintf(out, "# HELP scout_service_" #name "_total " help "\n"         \
                 "# TYPE scout_service_" #name "_total counter\n");        \
    for (int i = 0; i < n; i++) {                                          \
        scout_service_t *s = v->service(v->ctx, i);                        \
        fputs("scout_service_" #name "_total{service=\"", out);            \
        label(out, scout_service_name(s));                                 \
        fprintf(out, "\"} %llu\n",                                         \
                (unsigned long long)scout_service_stats(s)->name);         \
    }
    SCOUT_SERVICE_STATS(X)
#undef X
#define GAUGE(metric, help, fmt, expr)                                     \
    fprintf(out, "# HELP scout_" metric " " help "\n"                      \
                 "# TYPE scout_" metric " gauge\n");                        \
    for (int i = 0; i < n; i++) {                                          \
        scout_service_t *s = v->service(v->ctx, i);                        \
        fputs("scout_" metric "{service=\"", out);                         \
        label(out, scout_service_name(s));                                 \
        fprintf(out, "\"} " fmt "\n", expr);                               \
    }
    GAUGE("service_endpoints", "endpoints published", "%u",
          scout_service_count(s))
    GAUGE("service_staleness_seconds", "seconds since the list was last "
          "confirmed by ZooKeeper (0 while synced)", "%.3f",
          scout_service_staleness(s))
    GAUGE("service_protected", "1 while protection holds back a drop",
          "%d", scout_service_protected(s))
#undef GAUGE
    fprintf(out, "# HELP scout_rules_invalid_total rules in a service's "
                 "source paths refused (skipped whole)\n"
                 "# TYPE scout_rules_invalid_total counter\n");
    for (int i = 0; i < n; i++) {
        scout_service_t *s = v->service(v->ctx, i);

        for (int k = 0; k < scout_service_nsources(s); k++) {
            fputs("scout_rules_invalid_total{service=\"", out);
            label(out, scout_service_name(s));
            fputs("\",source=\"", out);
            label(out, scout_service_source_key(s, k));
            fprintf(out, "\"} %llu\n", (unsigned long long)
                    scout_service_source_invalid(s, k));
        }
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
    int n = v->nregs(v->ctx);

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
    fprintf(out, "# HELP scout_lua_memory_bytes bytes held by the policy's "
                 "Lua VM\n# TYPE scout_lua_memory_bytes gauge\n"
                 "scout_lua_memory_bytes %zu\n", v->lua_bytes(v->ctx));
    fprintf(out, "# HELP scout_anti_entropy_period_seconds how long one "
                 "anti-entropy pass over every path takes: the period, or "
                 "longer when the rate stretches it (0: off)\n"
                 "# TYPE scout_anti_entropy_period_seconds gauge\n"
                 "scout_anti_entropy_period_seconds %.3f\n",
            scout_watch_anti_entropy_period());
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

char *
scout_api_metrics_render(const scout_api_view_t *v, unsigned http_conns,
                         unsigned parked, size_t *len)
{
    char *buf = NULL;
    FILE *out = open_memstream(&buf, len);

    if (out == NULL)
        return NULL;
    global_counters(out);
    service_metrics(out, v);
    session_metrics(out, v);
    agent_metrics(out, v, http_conns, parked);
    loop_metrics(out);
    process_metrics(out);
    if (fclose(out) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
