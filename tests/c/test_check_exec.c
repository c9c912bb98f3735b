/*
 * test_check_exec.c - agent/register/check.c's exec checks, and freeing a
 * check from its own on_change, against real /bin/sh children and real
 * loopback servers on one libev loop.
 *
 * Why: a command check is only as good as what it leaves behind: the exit
 * status is the verdict, a command past its timeout is killed with its whole
 * process group and reaped (no zombie), a freed check kills its child right
 * there, and on_change may free its own check from every completion path.
 * /proc is read to prove children are gone.  Split from test_check.c (the
 * TCP, HTTP and Lua probes); both share tests/c/check_harness.h.
 *
 * Build: make tests-c (links the agent's objects).
 */
#define _GNU_SOURCE

#include "check_harness.h"

/* ---- files and processes ------------------------------------------------ */

/* Lines in a file (0 if it does not exist): exec checks append to one. */
static int
lines_in(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, ch;

    if (f == NULL)
        return 0;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

static int
exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* processes of a group that are not zombies (an orphaned grandchild may sit
 * as a zombie of pid 1 for a while: that is pid 1's to reap, not ours) */
static int
group_alive(pid_t pgid)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;

    while (d != NULL && (e = readdir(d)) != NULL) {
        pid_t pid = atoi(e->d_name), ppid, pgrp;
        char st;
        if (pid > 0 && proc_stat(pid, &st, &ppid, &pgrp) == 0
            && pgrp == pgid && st != 'Z')
            n++;
    }
    if (d != NULL)
        closedir(d);
    return n;
}

static int
gone(pid_t pid)
{
    return kill(pid, 0) == -1 && errno == ESRCH;
}

/* A temp path that does not exist (yet). */
static void
temp_path(char *buf, size_t len)
{
    int fd;

    snprintf(buf, len, "/tmp/scout-check-XXXXXX");
    fd = mkstemp(buf);
    close(fd);
    unlink(buf);
}

/* ---- tests --------------------------------------------------------------- */

/* The exit status is the verdict; a steady state fires nothing. */
static void
test_exec_status(void)
{
    char flag[64], runs[80], cmd[256];
    scout_check_t *c;
    rec_t r;
    int fd;

    c = mk(&r, SCOUT_CHECK_EXEC, "true", 30, 2000, 2, 1);
    CHECK(RUN_UNTIL(r.n == 1, 3) && r.up, "true up");
    CHECK(strcmp(r.reason, "exec exited 0") == 0, "%s", r.reason);
    scout_check_free(c);

    /* every run appends a line: three runs later, still no flip */
    temp_path(flag, sizeof(flag));
    snprintf(runs, sizeof(runs), "%s.runs", flag);
    snprintf(cmd, sizeof(cmd), "echo run >> %s; false", runs);
    c = mk(&r, SCOUT_CHECK_EXEC, cmd, 30, 2000, 1, 1);
    CHECK(RUN_UNTIL(strcmp(scout_check_reason(c), "exec exited 1") == 0, 3),
          "false: %s", scout_check_reason(c));
    /* generous: each run forks a shell, slow under valgrind on a busy host */
    CHECK(RUN_UNTIL(lines_in(runs) >= 3, 15), "runs: %d", lines_in(runs));
    CHECK(r.n == 0 && !scout_check_up(c), "false stays down");
    scout_check_free(c);
    unlink(runs);

    /* up, then down when the flag file appears */
    snprintf(cmd, sizeof(cmd), "test ! -e %s", flag);
    c = mk(&r, SCOUT_CHECK_EXEC, cmd, 30, 2000, 1, 1);
    CHECK(RUN_UNTIL(r.n == 1, 3) && r.up, "flag absent: up");
    fd = open(flag, O_CREAT | O_WRONLY, 0600);
    close(fd);
    CHECK(RUN_UNTIL(r.n == 2, 3) && !r.up, "flag present: down");
    CHECK(strcmp(r.reason, "exec exited 1") == 0, "%s", r.reason);
    scout_check_free(c);
    unlink(flag);
    (void)fd;
}

/* A command past its timeout is killed and reaped, no zombie, before it
 * could finish on its own (it would leave a mark when done). */
static void
test_exec_timeout_kills(void)
{
    char mark[64], pidf[80], cmd[256];
    scout_check_t *c;
    pid_t pid;
    rec_t r;

    temp_path(mark, sizeof(mark));
    snprintf(cmd, sizeof(cmd), "sleep 5; touch %s", mark);
    c = mk(&r, SCOUT_CHECK_EXEC, cmd, 60000, 200, 1, 1);
    CHECK(RUN_UNTIL((pid = find_child()) > 0, 2), "child started");
    CHECK(RUN_UNTIL(strcmp(scout_check_reason(c), "timeout after 200 ms")
                    == 0, 3), "timeout: %s", scout_check_reason(c));
    CHECK(RUN_UNTIL(gone(pid), 2), "child %d reaped", (int)pid);
    CHECK(!exists(mark), "killed before it finished");
    CHECK(find_child() == 0, "no children left");
    scout_check_free(c);

    /* the whole process group dies, not just sh */
    snprintf(pidf, sizeof(pidf), "%s.pid", mark);
    snprintf(cmd, sizeof(cmd), "echo $$ > %s; sleep 5; true", pidf);
    c = mk(&r, SCOUT_CHECK_EXEC, cmd, 60000, 300, 1, 1);
    CHECK(RUN_UNTIL(strcmp(scout_check_reason(c), "timeout after 300 ms")
                    == 0, 3), "timeout: %s", scout_check_reason(c));
    {
        FILE *f = fopen(pidf, "r");
        int pg = 0;
        CHECK(f != NULL && fscanf(f, "%d", &pg) == 1 && pg > 0, "pid file");
        if (f != NULL)
            fclose(f);
        CHECK(RUN_UNTIL(pg > 0 && gone(pg) && group_alive(pg) == 0, 2),
              "group %d gone (%d alive)", pg, group_alive(pg));
    }
    CHECK(find_child() == 0, "no children left");
    scout_check_free(c);
    unlink(pidf);
}

/* Free while the child runs: killed and reaped right there, not waited
 * for (it would leave a mark when done). */
static void
test_exec_free_kills(void)
{
    char mark[64], cmd[256];
    scout_check_t *c;
    pid_t pid;
    rec_t r;

    temp_path(mark, sizeof(mark));
    snprintf(cmd, sizeof(cmd), "sleep 5; touch %s", mark);
    c = mk(&r, SCOUT_CHECK_EXEC, cmd, 60000, 10000, 1, 1);
    CHECK(RUN_UNTIL((pid = find_child()) > 0, 2), "child started");
    scout_check_free(c);
    CHECK(pid > 0 && gone(pid), "freed: child %d gone", (int)pid);
    CHECK(!exists(mark), "killed, not waited for");
    CHECK(find_child() == 0, "no children left");
    unlink(mark);
}

/* on_change may free its own check, from every completion path */
static void
test_free_in_callback(void)
{
    listener_t ls = { .fd = -1 };
    char err[SCOUT_ERR_LEN], target[64], cmd[128];
    char flag[] = "/tmp/scout-check-XXXXXX";
    scout_check_conf_t conf = {
        .kind = SCOUT_CHECK_LUA, .interval_ms = 10, .rise = 1, .fall = 1,
        .lua_fn = lua_up,
    };
    rec_t r;
    int fd;

    memset(&r, 0, sizeof(r));
    r.free_self = 1;
    r.c = scout_check_new(loop, &conf, on_change, &r, err);
    CHECK(RUN_UNTIL(r.n == 1 && r.c == NULL, 2), "lua freed itself");

    /* a deadline no run reaches, valgrind's and a loaded host's included
     * (1 s was reached once under memcheck at load 8): this step is about
     * the success path; the next one takes the deadline's */
    mk(&r, SCOUT_CHECK_EXEC, "true", 10, 30000, 1, 1);
    r.free_self = 1;
    CHECK(RUN_UNTIL(r.n == 1 && r.c == NULL, 30), "exec freed itself: %s",
          r.reason);

    /* from the deadline, with the child still unreaped */
    fd = mkstemp(flag);
    close(fd);
    unlink(flag);
    snprintf(cmd, sizeof(cmd), "test ! -e %s || sleep 5", flag);
    mk(&r, SCOUT_CHECK_EXEC, cmd, 10, 150, 1, 1);
    CHECK(RUN_UNTIL(r.n == 1, 2) && r.up, "exec up");
    r.free_self = 1;
    fd = open(flag, O_CREAT | O_WRONLY, 0600);
    close(fd);
    CHECK(RUN_UNTIL(r.n == 2 && r.c == NULL, 2), "exec freed itself on "
          "timeout");
    CHECK(strcmp(r.reason, "timeout after 150 ms") == 0, "%s", r.reason);
    CHECK(find_child() == 0, "no children left");
    unlink(flag);

    /* from the http parser's verdict */
    CHECK(listener_open(&ls, AF_INET, 0) == 0, "listen");
    ls.on_conn = http_on_conn;
    http_mode = H_STATUS;
    http_status = 200;
    snprintf(target, sizeof(target), "http://127.0.0.1:%d/", ls.port);
    mk(&r, SCOUT_CHECK_HTTP, target, 10, 1000, 1, 1);
    r.free_self = 1;
    CHECK(RUN_UNTIL(r.n == 1 && r.c == NULL, 2), "http freed itself");
    listener_close(&ls);
    conns_close_all();

    ls.on_conn = NULL;
    CHECK(listener_open(&ls, AF_INET, 0) == 0, "listen");
    snprintf(target, sizeof(target), "127.0.0.1:%d", ls.port);
    mk(&r, SCOUT_CHECK_TCP, target, 10, 1000, 1, 1);
    r.free_self = 1;
    CHECK(RUN_UNTIL(r.n == 1 && r.c == NULL, 2), "tcp freed itself");
    listener_close(&ls);
}

int
main(void)
{
    ev_timer tick;

    signal(SIGPIPE, SIG_IGN);
    if (getenv("SCOUT_TEST_VERBOSE") == NULL)
        scout_log_set_level(SCOUT_LOG_ERROR);
    loop = ev_default_loop(0);
    ev_timer_init(&tick, on_tick, 0.005, 0.005);
    ev_timer_start(loop, &tick);
    fds = count_fds();
    RUN_CLEAN(test_exec_status());
    RUN_CLEAN(test_exec_timeout_kills());
    RUN_CLEAN(test_exec_free_kills());
    RUN_CLEAN(test_free_in_callback());

    CHECK(count_fds() == fds, "fds %d -> %d", fds, count_fds());
    CHECK(find_child() == 0, "no children left");
    ev_timer_stop(loop, &tick);
    ev_loop_destroy(loop);
    return test_summary();
}
