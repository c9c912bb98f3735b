/*
 * spawn.h -- run a shell command for the agent (health checks, render
 * commands, scout.exec): /bin/sh -c CMD in its own process group (so a timeout can kill
 * what sh started too), with a clean signal state whatever the agent
 * ignores or blocks (SIGPIPE is ignored in the agent).  The caller reaps it
 * with an ev_child watcher.
 */
#ifndef SCOUT_SPAWN_H
#define SCOUT_SPAWN_H

#include <sys/types.h>

/* 0 with *pid set, or an errno value.  quiet: stdin and stdout on
 * /dev/null; otherwise they are the agent's. */
int scout_spawn_sh(const char *cmd, int quiet, pid_t *pid);
/* The same with stdin on /dev/null and stdout and stderr on out_fd (which
 * the caller keeps and closes). */
int scout_spawn_sh_out(const char *cmd, int out_fd, pid_t *pid);

#endif
