/*
 * render.c -- debounce, render through the policy, write atomically, run
 * the command (see render.h).
 *
 * The command runs through /bin/sh with the agent's environment and is
 * reaped by an ev_child watcher (the default loop owns SIGCHLD); at most one
 * runs at a time, and a change that lands meanwhile runs it once more after.
 *
 * The loop only renders (Lua) and compares with what it wrote last; the
 * file system work -- reading what dest holds before the first write (up to
 * 16 MB), the temp file, fsync, rename, fsync of the directory -- runs in
 * the render's writer thread (writer.h), and the result comes back on the
 * loop.  At most one write is in flight; a render that lands meanwhile
 * waits as the one pending write (a newer one replaces it), so the file and
 * the command follow the renders in order.  The command runs only once its
 * file is in place.
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
#include "publish/writer.h"
#include "log.h"
#include "scout.h"
#include "spawn.h"
#include "stats.h"

/* One write, handed to the writer thread and back. */
struct job {
    char   *text;           /* owned by the job until collected         */
    size_t  len;
    int     compare;        /* first write: dest may hold these bytes    */
    int     rc;             /* WROTE, SAME or SCOUT_ERROR                */
    char    err[SCOUT_ERR_LEN];
};

#define WROTE 0
#define SAME  1

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
    int               written;        /* a write went through: dest known */
    scout_writer_t    writer;
    struct job       *pending;        /* the next write: loop-only      */
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
job_free(struct job *j)
{
    if (j != NULL)
        free(j->text);
    free(j);
}

/* In the writer thread (or on the loop without one): touches only the job
 * and the file system. */
static void
job_run(void *owner, void *job)
{
    const char *dest = ((scout_render_t *)owner)->conf.dest;
    struct job *j = job;

    if (j->compare) {
        size_t len = 0;
        char *old = read_existing(dest, &len);
        int same = old != NULL && len == j->len
                   && memcmp(old, j->text, len) == 0;

        free(old);
        if (same) {
            j->rc = SAME;
            return;
        }
    }
    j->rc = write_atomically(dest, j->text, j->len, j->err) == SCOUT_OK
            ? WROTE : SCOUT_ERROR;
}

static void submit(scout_render_t *r, struct job *j);

/* On the loop: what a write did; the command runs after its file is in
 * place, then the pending write (if any) goes out. */
static void
collect(void *owner, void *job)
{
    scout_render_t *r = owner;
    struct job *j = job;

    if (j->rc == SCOUT_ERROR) {
        scout_stats.render_write_failures++;
        scout_log(SCOUT_LOG_WARN, "render", "%s: %s; the file stays as it "
                  "was", r->conf.dest, j->err);
        job_free(j);
    } else {
        r->written = 1;
        free(r->last);
        r->last = j->text;
        r->last_len = j->len;
        j->text = NULL;
        if (j->rc == SAME) {
            scout_log(SCOUT_LOG_INFO, "render", "%s: unchanged (%zu bytes), "
                      "not written", r->conf.dest, r->last_len);
        } else {
            scout_stats.render_writes++;
            scout_log(SCOUT_LOG_INFO, "render", "%s: written (%zu bytes)",
                      r->conf.dest, r->last_len);
            run_command(r);
        }
        job_free(j);
    }
    if (r->pending != NULL) {
        j = r->pending;
        r->pending = NULL;
        if (r->last != NULL && j->len == r->last_len
            && memcmp(j->text, r->last, j->len) == 0) {
            scout_log(SCOUT_LOG_INFO, "render", "%s: unchanged (%zu bytes), "
                      "not written", r->conf.dest, j->len);
            job_free(j);
            return;
        }
        submit(r, j);
    }
}

static void
submit(scout_render_t *r, struct job *j)
{
    j->compare = !r->written;
    scout_writer_submit(&r->writer, j);
}

static void
render_now(scout_render_t *r)
{
    char err[SCOUT_ERR_LEN];
    struct job *j;
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
    if (!scout_writer_busy(&r->writer) && r->last != NULL && len == r->last_len
        && memcmp(text, r->last, len) == 0) {
        free(text);                     /* same bytes: nothing to do */
        scout_log(SCOUT_LOG_INFO, "render", "%s: unchanged (%zu bytes), "
                  "not written", r->conf.dest, len);
        return;
    }
    if ((j = calloc(1, sizeof(*j))) == NULL) {
        free(text);
        scout_stats.render_write_failures += 1;   /* no job: not written */
        scout_log(SCOUT_LOG_WARN, "render", "%s: out of memory, the file "
                  "stays as it is", r->conf.dest);
        return;
    }
    j->text = text;
    j->len = len;
    if (scout_writer_busy(&r->writer)) {  /* after it; the newest wins */
        job_free(r->pending);
        r->pending = j;
        return;
    }
    submit(r, j);
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
    int rc;

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
    /* what dest holds is read by the first write, in the thread */
    if ((rc = scout_writer_start(&r->writer, loop, job_run, collect, r)) != 0)
        scout_log(SCOUT_LOG_WARN, "render", "%s: no writer thread (%s): "
                  "written on the loop", conf->dest, strerror(rc));
    return r;
}

void
scout_render_free(scout_render_t *r)
{
    if (r == NULL)
        return;
    /* A write in flight is finished first (a reload's new render must not
     * race it on the same dest); what is pending is dropped with the rest. */
    job_free(scout_writer_stop(&r->writer));
    ev_timer_stop(r->loop, &r->timer);
    ev_child_stop(r->loop, &r->child);
    job_free(r->pending);
    free(r->last);
    free(r);
}
