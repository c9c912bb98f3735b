/*
 * shmpub.c -- feed the shared-memory snapshot (see shmpub.h).
 *
 * A timer runs after the current loop iteration's callbacks, so every
 * publish of that iteration lands in one generation, and generations are at
 * least SHM_MIN_INTERVAL apart.  Services that
 * have never been synced are written too (state "syncing", no endpoints),
 * so a reader can tell "not yet known" from "no such service".
 */
#include "publish/shmpub.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "scout.h"
#include "publish/shm.h"

struct scout_shmpub_s {
    struct ev_loop   *loop;
    scout_shm_t      *shm;
    scout_service_t **services;
    int               n;
    ev_timer          timer;
    double            last;         /* ev_now() of the last write */
};

/* Every generation makes each nginx worker rebuild its tables (~100 ms at
 * 10,000 services), so generations are at least this far apart; a single
 * change still goes out at once. */
#define SHM_MIN_INTERVAL 0.1
/* A failed write (a full /dev/shm) is tried again this often. */
#define SHM_RETRY 1.0

static void
write_now(struct ev_loop *loop, ev_timer *t, int revents)
{
    scout_shmpub_t *p = t->data;
    scout_shm_service_t *svcs = calloc((size_t)(p->n ? p->n : 1),
                                       sizeof(*svcs));
    char err[SCOUT_ERR_LEN];
    (void)loop;
    (void)revents;

    if (svcs == NULL)
        return;
    for (int i = 0; i < p->n; i++) {
        scout_service_t *s = p->services[i];
        svcs[i].name = scout_service_name(s);
        svcs[i].path = scout_service_path(s);
        svcs[i].state = scout_service_state(s);
        svcs[i].index = scout_service_index(s);
        svcs[i].settings = scout_service_settings(s, &svcs[i].settings_len);
        svcs[i].eps = scout_service_epset(s);
    }
    p->last = ev_now(p->loop);
    if (scout_shm_publish(p->shm, svcs, p->n, err) != SCOUT_OK) {
        scout_log(SCOUT_LOG_WARN, "shm", "publishing the snapshot: %s; "
                  "retrying in %.0f s", err, SHM_RETRY);
        ev_timer_set(&p->timer, SHM_RETRY, 0.);
        ev_timer_start(p->loop, &p->timer);
    }
    free(svcs);
}

scout_shmpub_t *
scout_shmpub_new(struct ev_loop *loop, const char *path,
                 scout_service_t **services, int n, char *err)
{
    scout_shmpub_t *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        snprintf(err, SCOUT_ERR_LEN, "out of memory");
        return NULL;
    }
    p->shm = scout_shm_open(path, err);
    if (p->shm == NULL) {
        free(p);
        return NULL;
    }
    p->loop = loop;
    p->services = services;
    p->n = n;
    ev_timer_init(&p->timer, write_now, 0., 0.);
    p->timer.data = p;
    scout_shmpub_changed(p);    /* readers learn the service list at once */
    return p;
}

void
scout_shmpub_changed(scout_shmpub_t *p)
{
    double wait = p->last + SHM_MIN_INTERVAL - ev_now(p->loop);

    if (ev_is_active(&p->timer))
        return;                 /* already due: it will see this change */
    ev_timer_set(&p->timer, wait > 0 ? wait : 0., 0.);
    ev_timer_start(p->loop, &p->timer);
}

void
scout_shmpub_set_services(scout_shmpub_t *p, scout_service_t **services, int n)
{
    p->services = services;
    p->n = n;
}

void
scout_shmpub_free(scout_shmpub_t *p)
{
    if (p == NULL)
        return;
    ev_timer_stop(p->loop, &p->timer);
    scout_shm_close(p->shm, 0);
    free(p);
}
