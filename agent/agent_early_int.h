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
    double    staged_ms, begin_ms;  /* on_loaded's and build_begin's CPU */
    unsigned  answered0;    /* the early server's count when it began */
    char      file[4096];   /* the snapshot's, for the log */
    int       running;      /* the thread is not joined yet */
    pthread_mutex_t mu;     /* abandoned, read by the thread before it */
    int       abandoned;    /*   sends done: a stop came first, the loop
                               is gone (agent_early.c) */
    int       stopping;     /* a stop cancels the load: */
    struct scout_hook_thread_s *hook;   /*   the loader's calls */
    int       loaded;       /* done's callback ran */
    int       rc;
    char      err[SCOUT_ERR_LEN];
    /* Made by the loader thread once the policy is loaded (conf is its
     * until the ev_async, and nobody changes it during the hand-over), so
     * that no iteration walks or sorts the registry: the stage's borrowed
     * names and paths; the name index's place of each service (rank) and
     * the index, filled as each service is built (NULL: out of memory,
     * agent.c's qsort in the last iteration). */
    const char **names, **paths;
    int      *rank;
    scout_service_t **by_name;
    int       by_loader;    /* the index was the loader's (for the log) */
    /* After the last slice, what only the next start or nobody waits for,
     * one step per iteration (after_step), so the finishing iteration is
     * the outputs and the API alone: the early server freed, the side
     * file's files, their fingerprint, its bytes, the heap's steps ended. */
    ev_check  after;
    ev_idle   after_spin;
    int       after_step;   /* 0: nothing pending */
    int       skip_side;    /* a reload made the side file meanwhile */
    int       mark_next;    /* AFTER_MARK's next service, */
    int       bytes_next;   /*   and AFTER_BYTES's */
    int       mark_slices, bytes_slices, retire_slices;
    scout_snapside_enc_t *enc;      /* AFTER_BYTES's, between slices */
    uint64_t  bytes_req0;   /* scout_stats.api_requests at its first */
    uint64_t  bytes_reqs;   /*   slice, and how many came until its last */
    int       ended;        /* scout_agent_early_end ran: l is a's */
    scout_early_t *retired; /* handed over, freed in the first step */
    uint64_t  early_fp;     /* the side file the early start read */
    char    **files;
    int       nfiles;
    int       after_steps;  /* run, and the longest's CPU, for the log */
    int       after_longest;
    double    after_longest_ms, sort_ms;
};

/* The hand-over's slices, and the steps' after it: at most this long or
 * this many services each, then the loop polls and the clients are
 * answered (the count keeps a fast machine's slices many too, and the
 * tests' ordering facts). */
#define SEED_SLICE_NS  (2 * 1000 * 1000)
#define SEED_SLICE_MAX 128
#define AFTER_SLICE_MAX 512
/* the early server's snapshot unmapped this much per iteration (~0.1 ms
 * a MB here) */
#define RETIRE_SLICE_BYTES ((size_t)4 << 20)

/* agent_side.c: the side file's inputs from the command line and conf. */
void scout_agent_side_inputs(const scout_agent_t *a,
                             scout_snapside_inputs_t *in);
/* agent_side.c: the steps after the last slice (the early server freed,
 * the side file, the heap's steps ended), one per loop iteration once
 * scout_agent_early_end ran; stopped and their state freed. */
void scout_agent_after_begin(scout_agent_t *a);
void scout_agent_after_stop(scout_agent_t *a);

#endif
