/*
 * render.c -- debounce, render through the policy, write atomically, run
 * the command (see render.h).
 *
 * The command runs through /bin/sh with the agent's environment and is
 * reaped by an ev_child watcher (the default loop owns SIGCHLD); at most one
 * runs at a time, and a change that lands meanwhile runs it once more after.
 */
#include "publish/render.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "publish/file_replace.h"
#include "log.h"
#include "scout.h"
#include "spawn.h"

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
    int               nready;         /* services[0..nready) serving */
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
    pid_t pid;
    int rc;

    if (r->conf.command == NULL)
        return;
    if (r->running) {
        r->again = 1;
        return;
    }
    rc = scout_spawn_sh(r->conf.command, 0, &pid);
    if (rc != 0) {
        scout_log(SCOUT_LOG_WARN, "render", "%s: cannot run \"%s\": %s",
                  r->conf.dest, r->conf.command, strerror(rc));
        return;
    }
    r->running = 1;
    ev_child_set(&r->child, pid, 0);
    ev_child_start(r->loop, &r->child);
}

/* temp file beside dest (dest.scout-tmp), fsync, rename, fsync of the
 * directory: readers see the old file or the new one, never a part */
static int
write_atomically(const char *dest, const char *text, size_t len, char *err)
{
    const char *slash = strrchr(dest, '/');
    size_t dlen = slash == NULL ? 1 : slash == dest ? 1 : (size_t)(slash - dest);
    const char *name = slash == NULL ? dest : slash + 1;
    char *dir = malloc(dlen + 1), *tmp = malloc(strlen(name) + 11);
    int rc = SCOUT_ERROR;

    if (dir == NULL || tmp == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
    } else {
        memcpy(dir, slash == NULL ? "." : dest, dlen);
        dir[dlen] = '\0';
        sprintf(tmp, "%s.scout-tmp", name);
        rc = scout_file_replace(dir, name, tmp, text, len, 0644, err);
    }
    free(dir);
    free(tmp);
    return rc;
}

/* What dest holds now (up to 16 MB), so that the first render after a
 * start or a reload writes and runs the command only on a real change, as
 * consul-template does; NULL when there is no such file. */
static char *
read_existing(const char *dest, size_t *len)
{
    /* only a regular file is read: a FIFO at dest must not hang the loop
     * (it is replaced by the first write) */
    int fd = open(dest, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    char *buf = NULL;
    FILE *f;
    long n;

    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)
        || (f = fdopen(fd, "rb")) == NULL) {
        close(fd);
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n <= (16 << 20)
        && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) != NULL
        && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = '\0';
        *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* Once every service has a list it keeps one (lists are never cleared):
 * the scan stops for good. */
static int
all_published(scout_render_t *r)
{
    for (; r->nready < r->nservices; r->nready++)
        if (!scout_service_serving(r->services[r->nready]))
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
        scout_log(SCOUT_LOG_INFO, "render", "%s: unchanged (%zu bytes), "
                  "not written", r->conf.dest, len);
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
    r->last = read_existing(conf->dest, &r->last_len);
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
