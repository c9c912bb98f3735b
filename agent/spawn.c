/*
 * spawn.c -- /bin/sh -c CMD with a clean signal state (spawn.h).  One copy
 * for health checks, render commands and policies' scout.exec: a render
 * command once inherited the agent's ignored SIGPIPE and its process group.
 */
#include "spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>

extern char **environ;

static int spawn(const char *cmd, int quiet, int out_fd, pid_t *pid);

int
scout_spawn_sh(const char *cmd, int quiet, pid_t *pid)
{
    return spawn(cmd, quiet, -1, pid);
}

int
scout_spawn_sh_out(const char *cmd, int out_fd, pid_t *pid)
{
    return spawn(cmd, 1, out_fd, pid);
}

static int
spawn(const char *cmd, int quiet, int out_fd, pid_t *pid)
{
    char *argv[] = { "/bin/sh", "-c", (char *)cmd, NULL };
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, dfl;
    int rc;

    if ((rc = posix_spawn_file_actions_init(&fa)) != 0)
        return rc;
    if ((rc = posix_spawnattr_init(&attr)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return rc;
    }
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGCHLD);
    sigaddset(&dfl, SIGHUP);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGQUIT);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGUSR1);
    sigaddset(&dfl, SIGUSR2);
    rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP
                                  | POSIX_SPAWN_SETSIGMASK
                                  | POSIX_SPAWN_SETSIGDEF);
    if (rc == 0)
        rc = posix_spawnattr_setpgroup(&attr, 0);
    if (rc == 0)
        rc = posix_spawnattr_setsigmask(&attr, &none);
    if (rc == 0)
        rc = posix_spawnattr_setsigdefault(&attr, &dfl);
    if (rc == 0 && quiet)
        rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null",
                                              O_RDONLY, 0);
    if (rc == 0 && quiet && out_fd < 0)
        rc = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null",
                                              O_WRONLY, 0);
    /* a policy's scout.exec: stdout and stderr both go to its pipe (the
     * pipe's own descriptors are close-on-exec) */
    if (rc == 0 && out_fd >= 0)
        rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    if (rc == 0 && out_fd >= 0)
        rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
    if (rc == 0)
        rc = posix_spawn(pid, "/bin/sh", &fa, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}
