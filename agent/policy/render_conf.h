/*
 * render_conf.h -- one render block of the policy as the C side keeps it
 * (shared by policy.h, which reads it, and render.h, which acts on it).
 */
#ifndef SCOUT_RENDER_CONF_H
#define SCOUT_RENDER_CONF_H

typedef struct {
    char *dest;
    char *command;      /* NULL: just write the file */
    int   wait_min_ms;
    int   wait_max_ms;
} scout_render_conf_t;

#endif
