/*
 * test_check.c - agent/register/check.c against real local servers on one libev loop.
 *
 * Why: a health check is only as good as its behaviour against real peers:
 * refused connects, servers that answer 503 or never answer, and the
 * rise/fall counting that decides when a registration comes and goes.  So
 * the TCP and HTTP servers here are real loopback sockets driven by the same
 * default loop as the checks (never blocking).  Commands (exec checks) and
 * freeing a check from its own on_change are in test_check_exec.c; both
 * share tests/c/check_harness.h.  Meant to run under ASan/UBSan and valgrind
 * as well.
 *
 * Build: make tests-c (links the agent's objects).
 */
#define _GNU_SOURCE

#include "check_harness.h"

/* ---- tests --------------------------------------------------------------- */

static void
test_tcp(void)
{
    listener_t ls = { .fd = -1 };
    char target[64], want[128];
    scout_check_t *c;
    rec_t r;
    int port;

    CHECK(listener_open(&ls, AF_INET, 0) == 0, "listen: %s", strerror(errno));
    port = ls.port;
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    c = mk(&r, SCOUT_CHECK_TCP, target, 50, 500, 2, 2);
    CHECK(!scout_check_up(c), "starts down");
    CHECK(strcmp(scout_check_reason(c), "not checked yet") == 0, "%s",
          scout_check_reason(c));

    /* one success is not enough with rise 2 */
    CHECK(RUN_UNTIL(strcmp(scout_check_reason(c), "not checked yet") != 0, 2),
          "first round");
    CHECK(!scout_check_up(c) && r.n == 0, "up after 1 of rise 2");
    snprintf(want, sizeof(want), "tcp %s: connected", target);
    CHECK(strcmp(scout_check_reason(c), want) == 0, "%s",
          scout_check_reason(c));

    CHECK(RUN_UNTIL(r.n == 1, 2), "rise");
    CHECK(r.up == 1 && scout_check_up(c), "up");
    CHECK(strcmp(r.reason, want) == 0, "%s", r.reason);
    CHECK(RUN_PROBES(3), "more probes while up");
    CHECK(r.n == 1, "steady up fires nothing: %d", r.n);

    listener_close(&ls);
    CHECK(RUN_UNTIL(r.n == 2, 2), "fall");
    snprintf(want, sizeof(want), "tcp %s: connection refused", target);
    CHECK(r.up == 0 && !scout_check_up(c), "down");
    CHECK(strcmp(r.reason, want) == 0, "%s", r.reason);
    CHECK(RUN_PROBES(3), "more probes while down");
    CHECK(r.n == 2, "steady down fires nothing: %d", r.n);

    CHECK(listener_open(&ls, AF_INET, port) == 0, "reopen: %s",
          strerror(errno));
    CHECK(RUN_UNTIL(r.n == 3, 2), "rise again");
    CHECK(r.up == 1 && scout_check_up(c), "up again");
    scout_check_free(c);
    listener_close(&ls);
}

static void
test_tcp_refused_and_names(void)
{
    listener_t ls = { .fd = -1 };
    char target[64], want[128];
    scout_check_t *c;
    rec_t r;
    int port;

    /* a port nobody listens on: bind one, close it */
    CHECK(listener_open(&ls, AF_INET, 0) == 0, "listen");
    port = ls.port;
    listener_close(&ls);
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    c = mk(&r, SCOUT_CHECK_TCP, target, 30, 500, 1, 1);
    CHECK(RUN_PROBES(3), "probes refused");
    snprintf(want, sizeof(want), "tcp %s: connection refused", target);
    CHECK(r.n == 0 && !scout_check_up(c), "refused stays down");
    CHECK(strcmp(scout_check_reason(c), want) == 0, "%s",
          scout_check_reason(c));
    scout_check_free(c);

    /* localhost means 127.0.0.1 */
    CHECK(listener_open(&ls, AF_INET, 0) == 0, "listen");
    snprintf(target, sizeof(target), "localhost:%d", ls.port);
    c = mk(&r, SCOUT_CHECK_TCP, target, 30, 500, 1, 1);
    CHECK(RUN_UNTIL(r.n == 1, 2) && r.up, "localhost up: %s", r.reason);
    scout_check_free(c);
    listener_close(&ls);
}

/* An IPv6 literal target, where this host has ::1 (not every container). */
static void
test_tcp_ipv6(void)
{
    listener_t ls = { .fd = -1 };
    char target[64];
    scout_check_t *c;
    rec_t r;

    if (listener_open(&ls, AF_INET6, 0) != 0) {
        SKIP("no [::1]: %s", strerror(errno));
        return;
    }
    snprintf(target, sizeof(target), "[::1]:%d", ls.port);
    c = mk(&r, SCOUT_CHECK_TCP, target, 30, 500, 1, 1);
    CHECK(RUN_UNTIL(r.n == 1, 2) && r.up, "[::1] up: %s", r.reason);
    scout_check_free(c);
    listener_close(&ls);
}

static void
test_http(void)
{
    listener_t ls = { .fd = -1, .on_conn = http_on_conn };
    char target[128], host[64];
    scout_check_t *c;
    rec_t r;
    int fds;

    CHECK(listener_open(&ls, AF_INET, 0) == 0, "listen");
    fds = count_fds();
    snprintf(target, sizeof(target), "http://127.0.0.1:%d/health?x=1",
             ls.port);
    snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%d\r\n", ls.port);
    http_mode = H_STATUS;
    http_status = 200;
    c = mk(&r, SCOUT_CHECK_HTTP, target, 50, 300, 2, 2);

    CHECK(RUN_UNTIL(r.n == 1, 2) && r.up, "200 up: %s", r.reason);
    CHECK(strcmp(r.reason, "http 200") == 0, "%s", r.reason);
    CHECK(strncmp(last_request, "GET /health?x=1 HTTP/1.0\r\n", 26) == 0,
          "request line: %s", last_request);
    CHECK(strstr(last_request, host) != NULL, "Host: %s", last_request);
    CHECK(strstr(last_request, "\r\nConnection: close\r\n") != NULL, "%s",
          last_request);

    http_status = 503;
    CHECK(RUN_UNTIL(r.n == 2, 2) && !r.up, "503 down");
    CHECK(strcmp(r.reason, "http 503") == 0, "%s", r.reason);

    http_status = 204;                  /* any 2xx */
    CHECK(RUN_UNTIL(r.n == 3, 2) && r.up, "204 up: %s", r.reason);
    CHECK(strcmp(r.reason, "http 204") == 0, "%s", r.reason);

    /* fall 2: down only after the second request that never got an
     * answer (r.at counts the requests the server had read at each flip) */
    nrequests = 0;
    r.calls = &nrequests;
    http_mode = H_HANG;
    CHECK(RUN_UNTIL(r.n == 4, 3) && !r.up, "hang down");
    CHECK(strcmp(r.reason, "timeout after 300 ms") == 0, "%s", r.reason);
    CHECK(r.at[3] >= 2, "down after %d hung requests, fall is 2", r.at[3]);
    r.calls = NULL;
    conns_close_all();

    http_mode = H_GARBAGE;
    CHECK(RUN_UNTIL(strstr(scout_check_reason(c), "bad response") != NULL,
                    2), "garbage: %s", scout_check_reason(c));
    http_mode = H_CLOSE;
    CHECK(RUN_UNTIL(strstr(scout_check_reason(c), "connection closed before "
                           "the headers ended") != NULL, 2), "close: %s",
          scout_check_reason(c));
    http_mode = H_HUGE;
    CHECK(RUN_UNTIL(strstr(scout_check_reason(c), "no end of headers in "
                           "65536 bytes") != NULL, 2), "huge: %s",
          scout_check_reason(c));
    CHECK(r.n == 4, "no flips while down: %d", r.n);

    /* free in the middle of a request: the socket goes too */
    http_mode = H_HANG;
    nrequests = 0;
    RUN_UNTIL(nrequests > 0, 2);
    scout_check_free(c);
    conns_close_all();
    CHECK(count_fds() == fds, "fds %d -> %d", fds, count_fds());
    listener_close(&ls);
}

static int lua_calls;
static const int lua_script[] = { 1, 1, 0, 1, 1, 1, 0, 1, 0, 0, 1, 1 };

static int
lua_fn(void *ud, char *reason, size_t len)
{
    int i = lua_calls++, ok;

    CHECK(ud == &lua_calls, "lua_ud passed through");
    ok = i < (int)(sizeof(lua_script) / sizeof(lua_script[0]))
         ? lua_script[i] : 0;
    if (i == 5)
        snprintf(reason, len, "fine at %d", i + 1);
    return ok;
}

static int
lua_long(void *ud, char *reason, size_t len)
{
    memset(reason, 'x', len);           /* no NUL: the check must cope */
    (*(int *)ud)++;
    return 1;
}

static void
test_lua(void)
{
    char err[SCOUT_ERR_LEN];
    scout_check_conf_t conf = {
        .kind = SCOUT_CHECK_LUA, .interval_ms = 10, .rise = 3, .fall = 2,
        .lua_fn = lua_fn, .lua_ud = &lua_calls,
    };
    scout_check_t *c;
    rec_t r;
    int n = 0;

    memset(&r, 0, sizeof(r));
    r.calls = &lua_calls;
    c = scout_check_new(loop, &conf, on_change, &r, err);
    CHECK(c != NULL, "%s", err);
    CHECK(RUN_UNTIL(lua_calls >= 16, 2), "calls %d", lua_calls);
    /* 1 1 0 1 1 1 -> up at call 6; 0 1 0 0 -> down at call 10; 1 1: no */
    CHECK(r.n == 2, "flips %d", r.n);
    CHECK(r.at[0] == 6 && r.at[1] == 10, "flipped at calls %d, %d",
          r.at[0], r.at[1]);
    CHECK(!scout_check_up(c), "ends down");
    CHECK(strcmp(r.reason, "lua down") == 0, "%s", r.reason);
    scout_check_free(c);

    /* the reason given at the up flip */
    lua_calls = 0;
    memset(&r, 0, sizeof(r));
    r.calls = &lua_calls;
    r.free_self = 0;
    c = scout_check_new(loop, &conf, on_change, &r, err);
    CHECK(RUN_UNTIL(r.n == 1, 2), "up");
    CHECK(strcmp(r.reason, "fine at 6") == 0, "%s", r.reason);
    scout_check_free(c);

    /* a reason with no NUL is cut, not overrun */
    conf.lua_fn = lua_long;
    conf.lua_ud = &n;
    conf.interval_ms = 60000;
    memset(&r, 0, sizeof(r));
    c = scout_check_new(loop, &conf, on_change, &r, err);
    CHECK(RUN_UNTIL(n == 1, 2), "called");
    CHECK(strlen(scout_check_reason(c)) == SCOUT_ERR_LEN - 1, "len %zu",
          strlen(scout_check_reason(c)));
    scout_check_free(c);
}

static void
expect_refused(int kind, const char *target, const char *msg)
{
    char err[SCOUT_ERR_LEN] = "";
    scout_check_conf_t conf = { .kind = kind, .target = target };
    scout_check_t *c = scout_check_new(loop, &conf, NULL, NULL, err);

    CHECK(c == NULL && strstr(err, msg) != NULL, "%s: got \"%s\"", target,
          err);
    scout_check_free(c);
}

static void
test_conf(void)
{
    char err[SCOUT_ERR_LEN];
    scout_check_conf_t conf = { .kind = SCOUT_CHECK_LUA, .lua_fn = lua_up };
    struct ev_loop *other;
    scout_check_t *c;

    CHECK(scout_check_kind_parse("tcp") == SCOUT_CHECK_TCP, "tcp");
    CHECK(scout_check_kind_parse("http") == SCOUT_CHECK_HTTP, "http");
    CHECK(scout_check_kind_parse("exec") == SCOUT_CHECK_EXEC, "exec");
    CHECK(scout_check_kind_parse("lua") == SCOUT_CHECK_LUA, "lua");
    CHECK(scout_check_kind_parse("https") == SCOUT_ERROR, "https");

    expect_refused(SCOUT_CHECK_TCP, "example.com:80", "no DNS");
    expect_refused(SCOUT_CHECK_TCP, "127.0.0.1", "want host:port");
    expect_refused(SCOUT_CHECK_TCP, "127.0.0.1:0", "bad port");
    expect_refused(SCOUT_CHECK_TCP, "127.0.0.1:99999", "want host:port");
    expect_refused(SCOUT_CHECK_TCP, "", "no target");
    expect_refused(SCOUT_CHECK_HTTP, "https://127.0.0.1/", "only http://");
    expect_refused(SCOUT_CHECK_HTTP, "http://example.com/", "no DNS");
    expect_refused(SCOUT_CHECK_HTTP, "http://u:p@127.0.0.1/", "user info");
    expect_refused(SCOUT_CHECK_HTTP, "127.0.0.1:80", "want http://");
    expect_refused(SCOUT_CHECK_HTTP, "http://127.0.0.1/a b", "want http://");
    expect_refused(SCOUT_CHECK_EXEC, NULL, "no target");
    expect_refused(42, "x", "unknown check kind");

    /* accepted: default port, [v6], zero fields take the defaults */
    c = scout_check_new(loop, &(scout_check_conf_t){ .kind = SCOUT_CHECK_HTTP,
                        .target = "http://[::1]" }, NULL, NULL, err);
    CHECK(c != NULL, "%s", err);
    scout_check_free(c);
    c = scout_check_new(loop, &conf, NULL, NULL, err);
    CHECK(c != NULL && !scout_check_up(c), "lua defaults: %s", err);
    scout_check_free(c);

    conf.lua_fn = NULL;
    CHECK(scout_check_new(loop, &conf, NULL, NULL, err) == NULL
          && strstr(err, "no function") != NULL, "%s", err);
    conf.lua_fn = lua_up;
    conf.fall = -1;
    CHECK(scout_check_new(loop, &conf, NULL, NULL, err) == NULL
          && strstr(err, "negative") != NULL, "%s", err);

    other = ev_loop_new(0);
    c = scout_check_new(other, &(scout_check_conf_t){ .kind =
                        SCOUT_CHECK_EXEC, .target = "true" }, NULL, NULL, err);
    CHECK(c == NULL && strstr(err, "default loop") != NULL, "%s", err);
    ev_loop_destroy(other);
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
    RUN_CLEAN(test_conf());
    RUN_CLEAN(test_tcp());
    RUN_CLEAN(test_tcp_refused_and_names());
    RUN_CLEAN(test_tcp_ipv6());
    RUN_CLEAN(test_http());
    RUN_CLEAN(test_lua());

    CHECK(count_fds() == fds, "fds %d -> %d", fds, count_fds());
    CHECK(find_child() == 0, "no children left");
    ev_timer_stop(loop, &tick);
    ev_loop_destroy(loop);
    return test_summary();
}
