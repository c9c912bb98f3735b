/*
 * spawn.c -- /bin/sh -c CMD with a clean signal state (spawn.h).  One copy
 * for health checks and render commands: a render command once inherited
 * the agent's ignored SIGPIPE and its process group.
 */
#include "spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>

extern char **environ;

int
scout_spawn_sh(const char *cmd, int quiet, pid_t *pid)
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
    if (rc == 0 && quiet)
        rc = posix_spawn_file_actions_addopen(&fa, 1, "/dev/null",
                                              O_WRONLY, 0);
    if (rc == 0)
        rc = posix_spawn(pid, "/bin/sh", &fa, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}
