/*
 * main.c -- the scout command line, and the owner of the one event loop.
 *
 *   scout [run] -c policy.lua [--zk H:P,...] [--api ADDR] [--log-level L]
 *   scout check policy.lua
 *   scout status | services | show | explain | pick | watch  (client.c)
 *   scout version | --version | --help
 *
 * SIGTERM and SIGINT stop the loop; the agent then closes its session (the
 * server drops our watches and ephemerals at once instead of after the
 * session timeout) and exits 0.  Nothing else in the agent may run a loop.
 */
#include <ctype.h>
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <http_parser.h>
#include <jansson.h>
#include <luajit.h>
#include <signal.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "agent.h"
#include "client/client.h"
#include "exitsig.h"
#include "client/libcurl.h"
#include "commit.h"                 /* generated: SCOUT_COMMIT */
#include "heap.h"
#include "log.h"
#include "loop.h"
#include "policy/policy.h"
#include "scout.h"
#include "sdnotify.h"
#include <zookeeper/zookeeper_version.h>

static const char usage[] =
"usage: scout [run] -c POLICY [options]   run the agent\n"
"       scout check POLICY                 validate a policy, do not connect\n"
"       scout status | services | show NAME | explain NAME | pick NAME |\n"
"             watch NAME                   ask a running agent (--help)\n"
"       scout version                      the version and its libraries\n"
"\n"
"options:\n"
"  -c, --config FILE      the policy file (Lua)\n"
"      --zk SERVERS       host:port[,host:port...][/chroot]; also $SCOUT_ZK\n"
"      --api ADDR         unix:/path/to.sock or 127.0.0.1:PORT\n"
"      --cache-dir DIR    keep a disk snapshot there; serve it on restart\n"
"      --log-level LEVEL  error | warn | info | debug\n"
"      --log-format FMT   text (the default) | json: one object a line\n"
"      --lua-dir DIR      where the scout Lua modules live\n"
"  -h, --help             this text\n"
"      --version          the version and its libraries\n";

/* What a bug report needs: our commit and every library's version, as
 * built (headers) and, where the library can say, as running. */
static int
cmd_version(void)
{
    char err[SCOUT_ERR_LEN];
    const scout_libcurl_t *lc = scout_libcurl_open(err);
    unsigned long hp = http_parser_version();

    printf("scout %s (commit %s)\n", SCOUT_VERSION, SCOUT_COMMIT);
    printf("  %s\n", LUAJIT_VERSION);
    printf("  ZooKeeper C client %s (single-threaded)\n", ZOO_VERSION);
    printf("  libev %d.%d\n", ev_version_major(), ev_version_minor());
    printf("  jansson %s\n", jansson_version_str());
    printf("  http-parser %lu.%lu.%lu\n", (hp >> 16) & 255, (hp >> 8) & 255,
           hp & 255);
    if (lc != NULL)
        printf("  libcurl %s (client commands)\n",
               lc->version_info(CURLVERSION_NOW)->version);
    else
        printf("  libcurl: none (%s)\n", err);
    return 0;
}

static scout_agent_t *running_agent;

/* The rule and the words of is_listen() in lua/scout/policy.lua, which
 * checks `api { listen = ... }`: the command line must not accept what the
 * policy refuses (a relative unix path would bind wherever the agent was
 * started).  Loopback-only is checked for both when the socket is made. */
static int
api_listen_ok(const char *v)
{
    const char *p = v, *digits;
    unsigned long port = 0;

    if (strncmp(v, "unix:/", 6) == 0)
        return v[6] != '\0';
    if (*p == '[') {
        for (p++; isxdigit((unsigned char)*p) || *p == ':'; p++)
            ;
        if (p == v + 1 || *p++ != ']')
            return 0;
    } else {
        for (; isalnum((unsigned char)*p) || *p == '.' || *p == '-'; p++)
            ;
        if (p == v)
            return 0;
    }
    if (*p++ != ':')
        return 0;
    for (digits = p; isdigit((unsigned char)*p); p++)
        if ((port = port * 10 + (unsigned long)(*p - '0')) > 65535)
            return 0;
    return p != digits && *p == '\0';
}

static void
on_reloaded(void *ud, int rc, const char *err)
{
    (void)ud;
    if (rc != SCOUT_OK) {
        scout_log(SCOUT_LOG_ERROR, "main", "reload refused, the running "
                  "policy stays: %s", err);
        scout_sdnotify_ready("reload refused; the running policy stays");
    } else {
        scout_sdnotify_ready("policy reloaded");
    }
}

/* The first SIGTERM/SIGINT deregisters and drains while still serving; a
 * second one stops at once -- and once the loop has ended, one during the
 * exit's own waits ends the process (exitsig.c). */
static int stopping;

/* The policy loads on a thread; the loop goes on serving with the running
 * one until the result comes to on_reloaded.  A SIGHUP meanwhile makes
 * one more reload after it.  Once a stop has begun there is none: a new
 * policy would register again what the stop has just deleted. */
static void
on_reload_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    char err[SCOUT_ERR_LEN];
    (void)loop;
    (void)w;
    (void)revents;

    if (running_agent == NULL)
        return;
    if (stopping) {
        scout_log(SCOUT_LOG_INFO, "main", "SIGHUP while stopping: no "
                  "reload, the stop goes on");
        return;
    }
    scout_log(SCOUT_LOG_INFO, "main", "SIGHUP: reloading the policy");
    scout_sdnotify_reloading();
    switch (scout_agent_reload(running_agent, on_reloaded, NULL, err)) {
    case SCOUT_AGAIN:
        break;
    default:
        on_reloaded(NULL, SCOUT_ERROR, err);
    }
}

static void
on_shutdown_done(void *ud)
{
    ev_break((struct ev_loop *)ud, EVBREAK_ALL);
}


static void
on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;

    if (stopping++ || running_agent == NULL) {
        scout_log(SCOUT_LOG_INFO, "main", stopping > 1
                  ? "signal %d again: stopping now" : "signal %d: stopping "
                  "now", w->signum);
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    scout_log(SCOUT_LOG_INFO, "main", "signal %d: shutting down", w->signum);
    scout_sdnotify_stopping();
    scout_agent_shutdown(running_agent, on_shutdown_done, loop);
}

static int
cmd_check(const char *file, const char *lua_dir)
{
    char err[SCOUT_ERR_LEN];
    scout_policy_t *p;
    scout_conf_t conf;

    scout_heap_populate_start(SCOUT_HEAP_STEP);  /* as the agent's start */
    if ((p = scout_policy_new(lua_dir, err)) == NULL) {
        fprintf(stderr, "scout: %s\n", err);
        return 1;
    }
    if (scout_policy_load(p, file, &conf, err) != SCOUT_OK) {
        fprintf(stderr, "%s\n", err);
        scout_policy_free(p);
        return 1;
    }
    for (int i = 0; i < conf.nwarnings; i++)
        fprintf(stderr, "%s\n", conf.warnings[i]);
    if (conf.nwarnings > 0)
        printf("%s: ok (%d services, %d warning%s)\n", file,
               conf.nservices, conf.nwarnings, conf.nwarnings > 1 ? "s" : "");
    else
        printf("%s: ok (%d services)\n", file, conf.nservices);
    scout_conf_free(&conf);
    scout_policy_free(p);
    return 0;
}

/* systemd's default soft limit is 1024: a thousand idle API connections
 * would leave the health checks and the ZooKeeper reconnects no fd.  The
 * hard limit is what the operator allowed; take it (the API sizes its
 * connection cap from what we get, see http.c). */
static void
raise_fd_limit(void)
{
    struct rlimit rl;
    rlim_t was;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    was = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            scout_log(SCOUT_LOG_WARN, "main", "cannot raise the fd limit "
                      "from %llu to %llu: %s", (unsigned long long)was,
                      (unsigned long long)rl.rlim_max, strerror(errno));
            return;
        }
    }
    scout_log(SCOUT_LOG_INFO, "main", "file descriptors: limit %llu "
              "(soft was %llu, hard %llu)", (unsigned long long)rl.rlim_cur,
              (unsigned long long)was, (unsigned long long)rl.rlim_max);
}

/* The loop has ended for a stop: its signal watchers hand SIGTERM, SIGINT
 * and SIGHUP over to exitsig.c for the exit's waits (without a window in
 * which one would take its default action). */
static void
exit_signals(struct ev_loop *loop, ev_signal *sigterm, ev_signal *sigint,
             ev_signal *sighup)
{
    scout_exitsig_block();
    ev_signal_stop(loop, sigterm);
    ev_signal_stop(loop, sigint);
    ev_signal_stop(loop, sighup);
    scout_exitsig_start();
}

static int
cmd_run(const scout_agent_opts_t *opts)
{
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    ev_signal sigterm, sigint, sighup;
    char err[SCOUT_ERR_LEN];
    scout_agent_t *agent;
    scout_loop_watch_t *stall;
    int loading, rc;

    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    /* Big buffers (the disk snapshot's 5 MB at 10,000 services, /metrics)
     * come from mmap and go back on free.  Without this glibc raises its
     * threshold to the size of the first one freed, and every later one
     * sits in the heap: 10 MB of RSS that never went away. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    /* print() in a policy hook should reach a log file line by line */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((stall = scout_loop_watch_new(loop, err)) == NULL) {
        fprintf(stderr, "scout: %s\n", err);
        return 1;
    }
    agent = scout_agent_new_early(loop, opts, &loading, err);
    if (agent == NULL) {
        fprintf(stderr, "scout: %s\n", err);
        scout_loop_watch_free(stall);
        return 1;
    }
    ev_signal_init(&sigterm, on_stop_signal, SIGTERM);
    ev_signal_init(&sigint, on_stop_signal, SIGINT);
    ev_signal_start(loop, &sigterm);
    ev_signal_start(loop, &sigint);
    ev_signal_init(&sighup, on_reload_signal, SIGHUP);
    ev_signal_start(loop, &sighup);
    if (loading) {
        /* the disk snapshot is served while the policy loads; the loop
         * breaks when it is loaded (or a stop signal came first) */
        ev_run(loop, 0);
        if (stopping)           /* the stop waits for the load (5 s at most) */
            exit_signals(loop, &sigterm, &sigint, &sighup);
        if ((rc = scout_agent_early_end(agent, err)) != SCOUT_OK) {
            if (rc == SCOUT_ERROR)
                fprintf(stderr, "scout: %s\n", err);
            ev_signal_stop(loop, &sigterm);
            ev_signal_stop(loop, &sigint);
            ev_signal_stop(loop, &sighup);
            if (rc == SCOUT_ERROR)
                scout_agent_free(agent);
            scout_loop_watch_free(stall);
            ev_loop_destroy(loop);
            scout_exitsig_stop();
            if (rc != SCOUT_ERROR)
                scout_log(SCOUT_LOG_INFO, "main", "stopped while the policy "
                          "was loading");
            return rc == SCOUT_ERROR ? 1 : 0;
        }
        if (stopping) {         /* loaded in the same iteration: it runs, */
            scout_exitsig_stop();
            ev_signal_start(loop, &sigterm);
            ev_signal_start(loop, &sigint);
            ev_signal_start(loop, &sighup);
        }
    }
    running_agent = agent;
    scout_sdnotify_start(loop);
    scout_sdnotify_ready("serving");    /* the API answers from here on */
    if (stopping) {
        /* ... and the stop that came with its end is acted on now, as the
         * first stop of a running agent is (a later one stops at once) */
        scout_log(SCOUT_LOG_INFO, "main", "a stop came as the policy "
                  "finished loading: shutting down");
        scout_sdnotify_stopping();
        scout_agent_shutdown(agent, on_shutdown_done, loop);
    }
    ev_run(loop, 0);
    running_agent = NULL;
    scout_sdnotify_stop(loop);

    exit_signals(loop, &sigterm, &sigint, &sighup);
    scout_agent_exit(agent);        /* flushes, closes; frees if checked */
    scout_loop_watch_free(stall);
    ev_loop_destroy(loop);
    scout_exitsig_stop();
    scout_log(SCOUT_LOG_INFO, "main", "stopped");
    return 0;
}

int
main(int argc, char **argv)
{
    enum { OPT_ZK = 256, OPT_API, OPT_CACHE, OPT_LOG, OPT_LUA, OPT_FORMAT };
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "zk", required_argument, NULL, OPT_ZK },
        { "api", required_argument, NULL, OPT_API },
        { "cache-dir", required_argument, NULL, OPT_CACHE },
        { "log-level", required_argument, NULL, OPT_LOG },
        { "log-format", required_argument, NULL, OPT_FORMAT },
        { "lua-dir", required_argument, NULL, OPT_LUA },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 }
    };
    scout_agent_opts_t opts;
    const char *verb = "run";
    int c;

    memset(&opts, 0, sizeof(opts));
    if (argc > 1 && argv[1][0] != '-') {
        verb = argv[1];
        argv++;
        argc--;
    }
    if (scout_client_is_verb(verb))
        return scout_client_main(verb, argc, argv);
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': opts.policy_file = optarg; break;
        case OPT_ZK: opts.zk = optarg; break;
        case OPT_API: opts.api = optarg; break;
        case OPT_LOG:
            if (scout_log_parse_level(optarg) < 0) {
                fprintf(stderr, "scout: unknown log level \"%s\"\n", optarg);
                return 2;
            }
            opts.log_level = optarg;
            scout_log_set_level(scout_log_parse_level(optarg));
            break;
        case OPT_FORMAT:
            if (scout_log_parse_format(optarg) < 0) {
                fprintf(stderr, "scout: --log-format must be text or json "
                        "(got \"%s\")\n", optarg);
                return 2;
            }
            scout_log_set_format(scout_log_parse_format(optarg));
            break;
        case OPT_LUA: opts.lua_dir = optarg; break;
        case OPT_CACHE: opts.cache_dir = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        case 'V': return cmd_version();
        default: fputs(usage, stderr); return 2;
        }
    }
    if (strcmp(verb, "version") == 0)
        return cmd_version();
    if (strcmp(verb, "help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(verb, "check") == 0) {
        const char *file = optind < argc ? argv[optind] : opts.policy_file;
        if (file == NULL) {
            fputs("scout check: which policy file?\n", stderr);
            return 2;
        }
        return cmd_check(file, opts.lua_dir);
    }
    if (strcmp(verb, "run") != 0) {
        fprintf(stderr, "scout: unknown command \"%s\"\n%s", verb, usage);
        return 2;
    }
    if (opts.policy_file == NULL && optind < argc)
        opts.policy_file = argv[optind];
    if (opts.policy_file == NULL) {
        fputs("scout run: a policy file is needed (-c FILE)\n", stderr);
        return 2;
    }
    if (opts.api != NULL && !api_listen_ok(opts.api)) {
        fprintf(stderr, "scout: --api must be \"unix:/path\" or "
                "\"host:port\" (got \"%s\")\n", opts.api);
        return 2;
    }
    return cmd_run(&opts);
}
