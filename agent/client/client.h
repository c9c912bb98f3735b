/*
 * client.h -- the scout command as a client of a running agent:
 *
 *   scout status | services | show NAME | explain NAME | watch NAME
 *   scout pick NAME [--key K] [--tag T] [--arg k=v ...]
 *
 * Why in the same binary: with the default unix socket every question would
 * otherwise be a curl --unix-socket line.  The client only reads the HTTP
 * API (libcurl speaks HTTP over the socket); it never touches ZooKeeper or
 * the agent's files.  The agent is found from --api, then $SCOUT_ADDR, then
 * the policy's api { listen } (-c FILE), then unix:/run/scout/scout.sock.
 * Human tables by default, --json for scripts.
 */
#ifndef SCOUT_CLIENT_H
#define SCOUT_CLIENT_H

/* 1 when verb is one of the client's. */
int scout_client_is_verb(const char *verb);

/* Runs verb with argv[1..argc-1] as its own arguments and options; returns
 * the process's exit status: 0 ok, 1 the agent said no (or is unhealthy,
 * for status), 2 a usage error, 3 the agent could not be reached. */
int scout_client_main(const char *verb, int argc, char **argv);

#endif
