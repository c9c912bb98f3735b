/*
 * shmpub.h -- when the shared-memory snapshot is written: after publishes
 * and session changes, coalesced so that one loop iteration's changes (the
 * first sync of thousands of services, say) cost one write.  The format and
 * its torn-read safety live in shm.c.
 */
#ifndef SCOUT_SHMPUB_H
#define SCOUT_SHMPUB_H

#include <ev.h>

#include "service.h"

typedef struct scout_shmpub_s scout_shmpub_t;

/* format: the file's format version (shm.h, scout_shm_open_version). */
scout_shmpub_t *scout_shmpub_new(struct ev_loop *loop, const char *path,
                                 int format, scout_service_t **services,
                                 int n, char *err);
/* svc published (or, NULL, any service's state may have moved: a session
 * change, a new list): write at the next loop turn, re-encoding only the
 * services named since the last write. */
void scout_shmpub_changed(scout_shmpub_t *p, scout_service_t *svc);
/* The same from svc's on_publish: the ids it changed are noted too
 * (scout_service_changed_ids), so that its next slice copies the others
 * without comparing them (publish/idlog.h). */
void scout_shmpub_published(scout_shmpub_t *p, scout_service_t *svc);
/* A policy reload replaced the service list. */
void scout_shmpub_set_services(scout_shmpub_t *p, scout_service_t **services, int n);
/* The file stays at shutdown: readers keep their mapping, and a restarted
 * agent's readers never see it missing. */
void scout_shmpub_free(scout_shmpub_t *p);

#endif
