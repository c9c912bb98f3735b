/*
 * render.c -- debounce, render through the policy, write atomically, run
 * the command (see render.h).
 *
 * The command runs through /bin/sh with the agent's environment and is
 * reaped by an ev_child watcher (the default loop owns SIGCHLD); at most one
 * runs at a time, and a change that lands meanwhile runs it once more after.
 */
#include "render.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "scout.h"

extern char **environ;

struct scout_render_s {
    struct ev_loop   *loop;
    scout_policy_t   *policy;
    int               idx;
    scout_render_conf_t conf;
    scout_service_t **services;
    int               nservices;
    ev_timer          timer;
    double            first_change;   /* of the current burst, or 0 */
    char             *last;           /* bytes last written */
    size_t            last_len;
    ev_child          child;
    int               running;        /* the command */
    int               again;          /* run it once more when it exits */
};

static void run_command(scout_render_t *r);

static void
on_child(struct ev_loop *loop, ev_child *w, int revents)
{
    scout_render_t *r = w->data;
    int st = w->rstatus;
    (void)revents;

    ev_child_stop(loop, w);
    r->running = 0;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        scout_log(SCOUT_LOG_INFO, "render", "%s: command done",
                  r->conf.dest);
    else
        scout_log(SCOUT_LOG_WARN, "render", "%s: command \"%s\" failed "
                  "(status %d)", r->conf.dest, r->conf.command,
                  WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    if (r->again) {
        r->again = 0;
        run_command(r);
    }
}

static void
run_command(scout_render_t *r)
{
    char *argv[] = { "/bin/sh", "-c", r->conf.command, NULL };
    pid_t pid;
    int rc;

    if (r->conf.command == NULL)
        return;
    if (r->running) {
        r->again = 1;
        return;
    }
    rc = posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ);
    if (rc != 0) {
        scout_log(SCOUT_LOG_WARN, "render", "%s: cannot run \"%s\": %s",
                  r->conf.dest, r->conf.command, strerror(rc));
        return;
    }
    r->running = 1;
    ev_child_set(&r->child, pid, 0);
    ev_child_start(r->loop, &r->child);
}

/* temp file beside dest, fsync, rename: readers see the old file or the
 * new one, never a part */
static int
write_atomically(const char *dest, const char *text, size_t len, char *err)
{
    size_t plen = strlen(dest) + 16;
    char *tmp = malloc(plen);
    int fd = -1;
    size_t off = 0;

    if (tmp == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return SCOUT_ERROR;
    }
    snprintf(tmp, plen, "%s.scout-tmp", dest);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        goto fail;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, dest) != 0)
        goto fail;
    free(tmp);
    return SCOUT_OK;

fail:
    snprintf(err, SCOUT_ERR_LEN, "%s: %s", tmp, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
    return SCOUT_ERROR;
}

static int
all_published(const scout_render_t *r)
{
    for (int i = 0; i < r->nservices; i++)
        if (!scout_service_serving(r->services[i]))
            return 0;
    return 1;
}

static void
render_now(scout_render_t *r)
{
    char err[SCOUT_ERR_LEN];
    char *text;
    size_t len;

    r->first_change = 0;
    for (int i = 0; i < r->nservices; i++)     /* the view reads them all */
        scout_service_seed_policy(r->services[i]);
    text = scout_policy_render(r->policy, r->idx, err);
    if (text == NULL) {
        scout_log(SCOUT_LOG_WARN, "render", "%s: template failed, the file "
                  "stays as it is: %s", r->conf.dest, err);
        return;
    }
    len = strlen(text);
    if (r->last != NULL && len == r->last_len
        && memcmp(text, r->last, len) == 0) {
        free(text);                     /* same bytes: nothing to do */
        return;
    }
    if (write_atomically(r->conf.dest, text, len, err) != SCOUT_OK) {
        scout_log(SCOUT_LOG_WARN, "render", "%s: %s", r->conf.dest, err);
        free(text);
        return;
    }
    free(r->last);
    r->last = text;
    r->last_len = len;
    scout_log(SCOUT_LOG_INFO, "render", "%s: written (%zu bytes)",
              r->conf.dest, len);
    run_command(r);
}

static void
on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    render_now(t->data);
}

void
scout_render_changed(scout_render_t *r)
{
    double now = ev_now(r->loop), due;

    if (!all_published(r))
        return;                 /* never render a half-known world */
    if (r->first_change == 0)
        r->first_change = now;
    due = now + r->conf.wait_min_ms / 1000.0;
    if (due > r->first_change + r->conf.wait_max_ms / 1000.0)
        due = r->first_change + r->conf.wait_max_ms / 1000.0;
    ev_timer_stop(r->loop, &r->timer);
    ev_timer_set(&r->timer, due > now ? due - now : 0., 0.);
    ev_timer_start(r->loop, &r->timer);
}

scout_render_t *
scout_render_new(struct ev_loop *loop, scout_policy_t *policy, int idx,
                 const scout_render_conf_t *conf, scout_service_t **services,
                 int nservices, char *err)
{
    scout_render_t *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return NULL;
    }
    r->loop = loop;
    r->policy = policy;
    r->idx = idx;
    r->conf = *conf;            /* strings stay owned by the agent's conf */
    r->services = services;
    r->nservices = nservices;
    ev_init(&r->timer, on_timer);
    r->timer.data = r;
    ev_child_init(&r->child, on_child, 0, 0);
    r->child.data = r;
    return r;
}

void
scout_render_free(scout_render_t *r)
{
    if (r == NULL)
        return;
    ev_timer_stop(r->loop, &r->timer);
    ev_child_stop(r->loop, &r->child);
    free(r->last);
    free(r);
}
