/*
 * test_sliced.c -- an answer rendered in slices (agent/api/sliced.c, what
 * /metrics and /v1/services use) over a real unix socket: every request
 * waiting for a render gets it, and the finished answer is not kept once the
 * loop iteration it ended in is over (at 10,000 services /metrics is 7 MB:
 * held between scrapes it was a tenth of the agent's memory).
 */
#include "http_harness.h"

#include "api/sliced.h"
#include "scout.h"

static int renders;                 /* begun */
static char body_of[64];

typedef struct {
    int steps;
} job_t;

static void *
job_begin(void *ud)
{
    job_t *j = calloc(1, sizeof(*j));

    (void) ud;
    renders++;
    return j;
}

/* Two slices: the second from the idle watcher, as a big registry's. */
static int
job_step(void *job, int64_t deadline_ns)
{
    job_t *j = job;

    (void) deadline_ns;
    return ++j->steps < 2 ? SCOUT_AGAIN : SCOUT_OK;
}

static char *
job_finish(void *ud, void *job, size_t *len)
{
    char *buf = malloc(64);

    (void) ud;
    free(job);
    if (buf == NULL)
        return NULL;
    *len = (size_t) snprintf(buf, 64, "answer-%d", renders);
    return buf;
}

static void
job_drop(void *job)
{
    free(job);
}

static const scout_sliced_ops_t OPS = {
    "test slice", "text/plain", job_begin, job_step, job_finish, job_drop,
};

static scout_sliced_t *sl;

static int
sliced_handler(void *ud, scout_http_req_t *req)
{
    if (strcmp(scout_http_req_path(req), "/sliced") == 0)
        return scout_sliced_answer(sl, req);
    return handler(ud, req);
}

/* Both clients waiting for one render get it; once answered, nothing is
 * held; the next request renders again. */
static void
test_answer_not_kept(void)
{
    client_t c, d;

    client_unix(&c, sock);
    client_unix(&d, sock);
    SEND(&c, "GET /sliced HTTP/1.1\r\n\r\n");
    SEND(&d, "GET /sliced HTTP/1.1\r\n\r\n");
    RUN_UNTIL(got(&c, 1) && got(&d, 1), 10);
    CHECK(got(&c, 1) && got(&d, 1), "both answered");
    CHECK(c.r[0].status == 200 && d.r[0].status == 200);
    snprintf(body_of, sizeof(body_of), "answer-%d", renders);
    CHECK(c.r[0].body != NULL && strcmp(c.r[0].body, body_of) == 0,
          "body %s", c.r[0].body ? c.r[0].body : "(none)");
    /* the answer goes before the loop waits again */
    RUN_UNTIL(scout_sliced_held(sl) == 0, 5);
    CHECK(scout_sliced_held(sl) == 0, "still held: %zu bytes",
          scout_sliced_held(sl));
    SEND(&c, "GET /sliced HTTP/1.1\r\n\r\n");
    RUN_UNTIL(got(&c, 2), 10);
    CHECK(got(&c, 2) && c.r[1].status == 200);
    snprintf(body_of, sizeof(body_of), "answer-%d", renders);
    CHECK(c.r[1].body != NULL && strcmp(c.r[1].body, body_of) == 0
          && strcmp(body_of, "answer-1") != 0, "a new render: %s", body_of);
    RUN_UNTIL(scout_sliced_held(sl) == 0, 5);
    CHECK(scout_sliced_held(sl) == 0, "still held: %zu bytes",
          scout_sliced_held(sl));
    client_close(&c);
    client_close(&d);
}

int
main(void)
{
    char          err[SCOUT_ERR_LEN], addr[160];
    scout_http_t *h;

    (void) hdr_is;              /* the harness's, unused here */
    (void) client_tcp;
    if (harness_start("test_sliced") != 0)
        return 2;
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    h = scout_http_new(loop, addr, sliced_handler, NULL, err);
    sl = scout_sliced_new(loop, &OPS, NULL);
    CHECK(h != NULL && sl != NULL, "unix: %s", err);
    if (h != NULL && sl != NULL)
        RUN(test_answer_not_kept());
    scout_http_free(h);
    scout_sliced_free(sl);
    harness_stop();
    return test_summary();
}
