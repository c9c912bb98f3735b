/*
 * persist.c -- when the disk snapshot is read and written (see persist.h).
 *
 * Writes happen on the loop: encoding 10,000 services takes tens of ms and
 * the fsyncs about as long, at most once a second and only after a change;
 * a worker thread would hide that but is not worth its locks yet.
 */
#include "persist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "log.h"
#include "scout.h"
#include "snapshot.h"

struct scout_persist_s {
    struct ev_loop   *loop;
    char             *dir;
    char             *file;
    char             *ensemble;
    int               max_age_s;
    scout_service_t **services;
    int               n;
    ev_timer          timer;
    int               dirty;
    time_t            loaded_at;   /* written_at of what we loaded, or 0 */
};

static int64_t
wall_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void
write_now(scout_persist_t *p)
{
    scout_snapshot_service_t *svcs;
    char err[SCOUT_ERR_LEN];
    int n = 0;
    double t0 = scout_now_ms();

    svcs = calloc((size_t)(p->n ? p->n : 1), sizeof(*svcs));
    if (svcs == NULL)
        return;
    for (int i = 0; i < p->n; i++)
        if (scout_service_serving(p->services[i]))
            scout_service_snapshot(p->services[i], &svcs[n++]);
    if (scout_snapshot_write(p->dir, p->ensemble, svcs, n, err) != SCOUT_OK)
        scout_log(SCOUT_LOG_WARN, "persist", "writing the snapshot: %s; "
                  "will retry after the next change", err);
    else
        scout_log(SCOUT_LOG_DEBUG, "persist", "wrote %d services to %s in "
                  "%.1f ms", n, p->file, scout_now_ms() - t0);
    free(svcs);
    p->dirty = 0;
}

static void
on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_persist_t *p = t->data;
    (void)loop;
    (void)revents;

    if (p->dirty)
        write_now(p);
}

scout_persist_t *
scout_persist_new(struct ev_loop *loop, const char *dir, int max_age_s,
                  const char *ensemble, scout_service_t **services, int n,
                  char *err)
{
    scout_persist_t *p = calloc(1, sizeof(*p));
    size_t len = strlen(dir) + sizeof(SCOUT_SNAPSHOT_FILE) + 2;

    if (p == NULL)
        goto oom;
    p->dir = strdup(dir);
    p->ensemble = strdup(ensemble);
    p->file = malloc(len);
    if (p->dir == NULL || p->ensemble == NULL || p->file == NULL)
        goto oom;
    snprintf(p->file, len, "%s/%s", dir, SCOUT_SNAPSHOT_FILE);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, SCOUT_ERR_LEN, "cache dir %s: %s", dir,
                 strerror(errno));
        scout_persist_free(p);
        return NULL;
    }
    p->loop = loop;
    p->max_age_s = max_age_s;
    p->services = services;
    p->n = n;
    ev_timer_init(&p->timer, on_timer, 1.0, 1.0);
    p->timer.data = p;
    return p;

oom:
    snprintf(err, SCOUT_ERR_LEN, "out of memory");
    scout_persist_free(p);
    return NULL;
}

void
scout_persist_load(scout_persist_t *p)
{
    char err[SCOUT_ERR_LEN];
    scout_snapshot_t *snap;
    int seeded = 0;
    struct stat st;

    if (stat(p->file, &st) != 0) {
        scout_log(SCOUT_LOG_INFO, "persist", "no snapshot at %s: a first "
                  "start", p->file);
        return;
    }
    snap = scout_snapshot_read(p->file, err);
    if (snap == NULL) {
        scout_log(SCOUT_LOG_WARN, "persist", "ignoring the snapshot: %s",
                  err);
        return;
    }
    if (scout_snapshot_check_ensemble(snap, p->ensemble, err) != SCOUT_OK) {
        scout_log(SCOUT_LOG_WARN, "persist", "ignoring the snapshot: %s",
                  err);
        scout_snapshot_free(snap);
        return;
    }
    for (int i = 0; i < p->n; i++) {
        scout_service_t *s = p->services[i];
        int k = scout_snapshot_find(snap, scout_service_name(s));
        scout_snapshot_service_t ss;
        scout_epset_t eps;

        if (k < 0)
            continue;
        scout_snapshot_get(snap, k, &ss);
        if (strcmp(ss.path, scout_service_path(s)) != 0)
            continue;           /* the policy moved it: not the same list */
        scout_epset_init(&eps);
        scout_snapshot_take(snap, k, &eps);
        if (scout_service_seed(s, &eps, ss.index, ss.pzxid, ss.max_mzxid,
                               err) != SCOUT_OK) {
            scout_log(SCOUT_LOG_WARN, "persist", "service %s: not seeded: "
                      "%s", scout_service_name(s), err);
            scout_epset_free(&eps);
            continue;
        }
        seeded++;
    }
    p->loaded_at = scout_snapshot_written_at(snap);
    scout_log(SCOUT_LOG_INFO, "persist", "serving %d services from %s "
              "(written %lld s ago) until ZooKeeper confirms them", seeded,
              p->file, (long long)(wall_ms() / 1000 - p->loaded_at));
    scout_snapshot_free(snap);
}

void
scout_persist_changed(scout_persist_t *p)
{
    p->dirty = 1;
    if (!ev_is_active(&p->timer))
        ev_timer_start(p->loop, &p->timer);
}

void
scout_persist_flush(scout_persist_t *p)
{
    if (p->dirty)
        write_now(p);
}

int
scout_persist_too_old(const scout_persist_t *p, char *reason, size_t len)
{
    long long age;

    if (p->loaded_at == 0)
        return 0;
    age = (long long)(wall_ms() / 1000 - p->loaded_at);
    if (age <= p->max_age_s)
        return 0;
    for (int i = 0; i < p->n; i++) {
        if (scout_service_from_snapshot(p->services[i])) {
            snprintf(reason, len, "service %s is served from a snapshot "
                     "%lld s old (max_age %d s)",
                     scout_service_name(p->services[i]), age, p->max_age_s);
            return 1;
        }
    }
    return 0;
}

void
scout_persist_set_services(scout_persist_t *p, scout_service_t **services, int n)
{
    p->services = services;
    p->n = n;
}

void
scout_persist_free(scout_persist_t *p)
{
    if (p == NULL)
        return;
    if (p->loop != NULL)
        ev_timer_stop(p->loop, &p->timer);
    free(p->dir);
    free(p->file);
    free(p->ensemble);
    free(p);
}
