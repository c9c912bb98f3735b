/*
 * agent_early_int.h -- what agent_early.c (the early start and its
 * hand-over) and agent_side.c (the side file, and the steps after the
 * hand-over's last slice) share: the loader's state.  Not a module API.
 */
#ifndef SCOUT_AGENT_EARLY_INT_H
#define SCOUT_AGENT_EARLY_INT_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>

#include <ev.h>

#include "agent_int.h"
#include "api/early.h"
#include "publish/persist.h"
#include "publish/snapside.h"

struct loader {
    pthread_t thread;
    ev_async  done;
    ev_check  seed;         /* one slice per iteration, after the poll */
    ev_idle   spin;         /*   and the poll does not block meanwhile */
    scout_persist_stage_t *stage;   /* the lists decoded, until seeded */
    int       staged;       /* the hand-over loads the snapshot (stage
                               NULL then: refused, said in the log) */
    int       building;     /* decoded: the services are being built */
    int       slices;       /* building's, and its longest, ms */
    int       on_connected; /* services built on a connected session */
    double    longest_ms, total_ms;
    unsigned  answered0;    /* the early server's count when it began */
    char      file[4096];   /* the snapshot's, for the log */
    sigset_t  loop_mask;    /* the loop thread's, restored after the load */
    int       running;      /* the thread is not joined yet */
    int       loaded;       /* done's callback ran */
    int       rc;
    char      err[SCOUT_ERR_LEN];
    struct byname *order;   /* the policy's services by name, sorted in
                               an iteration of their own (NULL: agent.c's
                               qsort in the last one) */
    int       ordered;
    /* After the last slice, what only the next start or nobody waits for,
     * one step per iteration (after_step), so the finishing iteration is
     * the outputs and the API alone: the early server freed, the side
     * file's files, their fingerprint, its bytes, the heap's steps ended. */
    ev_check  after;
    ev_idle   after_spin;
    int       after_step;   /* 0: nothing pending */
    int       ended;        /* scout_agent_early_end ran: l is a's */
    scout_early_t *retired; /* handed over, freed in the first step */
    uint64_t  early_fp;     /* the side file the early start read */
    char    **files;
    int       nfiles;
    int       after_steps;  /* run, and the longest's CPU, for the log */
    double    after_longest_ms, sort_ms;
};

struct byname {
    const char *name;
    int         i;
};

/* agent_side.c: the side file's inputs from the command line and conf. */
void scout_agent_side_inputs(const scout_agent_t *a,
                             scout_snapside_inputs_t *in);
/* agent_side.c: the steps after the last slice (the early server freed,
 * the side file, the heap's steps ended), one per loop iteration once
 * scout_agent_early_end ran; stopped and their state freed. */
void scout_agent_after_begin(scout_agent_t *a);
void scout_agent_after_stop(scout_agent_t *a);

#endif
