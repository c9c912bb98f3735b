/*
 * render.h -- files rendered from what scout knows, for tools that only read
 * files (HAProxy backends, nginx upstream blocks): consul-template's rules.
 * Changes are debounced (quiet for wait.min, but never longer than wait.max
 * after the first), the file is replaced atomically, and the command runs
 * only when the bytes changed -- once per real change, never per event.
 */
#ifndef SCOUT_RENDER_H
#define SCOUT_RENDER_H

#include <ev.h>

#include "policy/policy.h"
#include "service.h"

typedef struct scout_render_s scout_render_t;

/* idx: which render block of the policy.  services: all of them (a file is
 * rendered only once every service has published at least once). */
scout_render_t *scout_render_new(struct ev_loop *loop, scout_policy_t *policy,
                                 int idx, const scout_render_conf_t *conf,
                                 scout_service_t **services, int nservices,
                                 char *err);
/* A service published: render after the debounce. */
void scout_render_changed(scout_render_t *r);
void scout_render_free(scout_render_t *r);

#endif
