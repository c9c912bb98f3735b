/*
 * cache.h -- what scout knows about one watched path: its children with
 * their Stat and (when the codec needs it) their data, plus the changes not
 * yet accepted by the policy.
 *
 * Ordering is enforced here: a child list whose pzxid is older than the one
 * held, or a data result whose (czxid, mzxid) is older than the child's, is
 * refused and counted by the caller.  The cache never talks to ZooKeeper.
 *
 * Pending changes are kept until the policy accepts them
 * (scout_cache_commit): a hook that fails leaves them pending, so nothing is
 * lost and the next successful update sees everything.
 *
 * Node data is held only until the policy accepted it: the policy keeps
 * what it decoded, ordering and anti-entropy compare zxids, and a dubbo URL
 * is hundreds of bytes per endpoint.  Only a new policy (a reload) needs the
 * bytes again: those children are read again ("refetch"), and until every
 * one is back the service does not update (a new VM judging a partial list
 * would take the missing children for gone).
 */
#ifndef SCOUT_CACHE_H
#define SCOUT_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include "hash.h"              /* for the zk/ files that include it through here */
#include <zookeeper/zookeeper.h>

typedef struct scout_child_s scout_child_t;

struct scout_child_s {
    char          *data;           /* its bytes (scout_cache_data_len of
                                      them, NUL after); NULL when not
                                      read, empty, or let go after the
                                      policy accepted it (had_bytes)   */
    int64_t        czxid;          /* 0 until a data read returned       */
    int64_t        mzxid;
    scout_child_t *next_dirty;
    scout_child_t *next_pending;
    uint32_t       data_req;       /* id of the read in flight, 0 = none
                                      (a watch's read ids, low 32 bits:
                                      one read a child at a time)     */
    unsigned       needs_data:1;   /* the codec reads znode data         */
    unsigned       has_data:1;
    unsigned       had_bytes:1;    /* the data read was not empty: bytes
                                      let go must be read again       */
    unsigned       data_dirty:1;   /* a data read is wanted              */
    unsigned       pending:1;      /* on the pending list                */
    unsigned       announced:1;    /* the policy knows this child        */
    unsigned       mzxid_announced:1; /* ... at this mzxid (set when the
                                      policy accepts it, cleared when
                                      the mzxid moves: it never comes
                                      back to one it left, so this is
                                      "announced mzxid == mzxid"
                                      without the 8 bytes)            */
    unsigned       refetch:1;      /* read again for a new policy        */
    unsigned       slotted:1;      /* its data watch has a session slot  */
    unsigned       slot:6;         /* which one (watch.c spreading)      */
    unsigned       gone:1;         /* removed; freed at the next compaction */
    /* In the same allocation, and fields packed: there is one of these
     * per znode watched (100k at scale): no hash handle (56 bytes and a
     * share of buckets), an 8-byte slot in the sorted array instead.  The
     * name starts right after the bits' bytes (offset 46): a name of up
     * to 9 bytes with its NUL keeps the child in glibc's 64-byte chunk (it
     * was 80 with the data's length, a 64-bit read id and the announced
     * mzxid: 1.6 MB at 100k children, test_footprint). */
    char           name[];
};

/* The children are an array sorted by name (strcmp), binary-searched: a
 * lookup is O(log n), a child list is merged in O(n + new log new).  A
 * single removal (a child's delete event) leaves a tombstone (gone) rather
 * than moving the array, so a service losing its children one event at a
 * time stays O(1) a removal amortized: the array is compacted once half of
 * it is tombstones, and at every child list applied. */
typedef struct {
    scout_child_t **kids;          /* sorted by name, gone ones included */
    unsigned       nkids;          /* slots used                        */
    unsigned       ngone;          /* of them, tombstones               */
    unsigned       count;          /* live children                     */
    unsigned       data_children;  /* children with a data watch        */
    size_t         data_name_bytes;/* their names' bytes (SetWatches)   */
    size_t        *slot_bytes;     /* watch.c's per-slot watched bytes   */
    size_t       **slot_total;     /* each slot's session total (spread.c) */
    uint32_t       slot_base;      /* bytes a data watch costs beyond
                                      its name ("/path/" + length)     */
    unsigned       nlisted;        /* (packed: a watch fits 384 bytes,
                                      test_footprint)                  */
    int64_t        pzxid;          /* of the newest child list applied  */
    int64_t        max_mzxid;      /* newest data applied               */
    scout_child_t *dirty;          /* children wanting a data read      */
    scout_child_t *pending;        /* added/changed, not yet accepted   */
    char         **removed;        /* announced names gone since        */
    uint16_t      *listed;         /* the last list's nlisted names, in
                                      its order, as positions in kids
                                      (UINT16_MAX: not known); kept only
                                      while kids is within search_max  */
    unsigned       nremoved, removed_cap;
    unsigned       refetching;     /* children with refetch set         */
    unsigned       have_list:1;
    unsigned       keep_data:1;    /* commit keeps node data (a source's
                                      rules: few, small, and a reload must
                                      compile them without a re-read)  */
} scout_cache_t;

/* Sets need[k] (0 or 1) for each of the n names new in one child list: asked
 * once per list, not once per child (a policy call each). */
typedef void (*scout_cache_needs_data_fn)(void *ud, const char *const *names,
                                          unsigned n, unsigned char *need);

void scout_cache_init(scout_cache_t *c);
void scout_cache_free(scout_cache_t *c);

scout_child_t *scout_cache_find(scout_cache_t *c, const char *name);
/* Walk the live children in name order, from position *at (0: the first);
 * *at moves past the child returned.  NULL at the end.  A walk must not
 * call scout_cache_remove, which may compact the array under it. */
scout_child_t *scout_cache_next(const scout_cache_t *c, unsigned *at);
/* The position of the first child whose name sorts at or after name: a
 * walk resumed there continues where it stopped, even if that child went. */
unsigned scout_cache_seek(const scout_cache_t *c, const char *name);

/* Up to this many children held (1024), a child list is matched against
 * them by a binary search per name (a name first looked for where the last
 * list had it: 2 bytes a listed child, kept); past it, by sorting the list
 * and one walk.  The same result either way; tests lower it to compare the
 * two. */
extern unsigned scout_cache_search_max;
/* Up to this many new names in a list (8), when the array holds no
 * tombstones, each is put in its place by a binary search and the held
 * children copied around them; else one walk merges the two.  The same
 * array either way; tests set it to 0 to compare the two. */
extern unsigned scout_cache_insert_max;
/* Lists whose new names went in that way (tests: the path was taken). */
extern unsigned long scout_cache_inserts;
/* Names of a child list found where the last list put them (the search's
 * shortcut, search_new in cache.c): tests read it to know they took it. */
extern unsigned long scout_cache_listed_hits;

/* Apply a child list read with its parent's Stat.  Returns SCOUT_AGAIN (and
 * changes nothing) when the list is older than the one held.  New children
 * that need data are put on the dirty list; the others become pending.
 * *changed counts children added and removed. */
int scout_cache_apply_children(scout_cache_t *c,
                               const struct String_vector *names,
                               const struct Stat *stat,
                               scout_cache_needs_data_fn needs_data, void *ud,
                               unsigned *changed);

/* The parent does not exist: every child is gone. */
void scout_cache_apply_missing(scout_cache_t *c);

/* Apply a data read of a child.  SCOUT_AGAIN when older than what is held. */
int scout_cache_apply_data(scout_cache_t *c, scout_child_t *child,
                           const char *data, int len,
                           const struct Stat *stat);

/* How many bytes child->data holds (0 when it is NULL). */
size_t scout_cache_data_len(const scout_child_t *child);

void scout_cache_remove(scout_cache_t *c, scout_child_t *child);
void scout_cache_mark_dirty(scout_cache_t *c, scout_child_t *child);
/* Every child that reads data wants a fresh read (a new session lost the
 * data watches). */
void scout_cache_mark_all_dirty(scout_cache_t *c);

int scout_cache_has_pending(const scout_cache_t *c);
/* A new policy must judge every child again: every child that is ready
 * (its data read, or none needed) becomes pending, as if just read; one
 * whose data was let go is marked dirty and refetching instead, and becomes
 * pending when its read returns.  Returns how many were marked so: the
 * caller has them read (scout_watch_reread). */
unsigned scout_cache_mark_all_pending(scout_cache_t *c);
/* Children are being read again for a new policy: no update until done. */
int scout_cache_refetching(const scout_cache_t *c);
/* The pending changes were handed to the policy.  The policy may have
 * applied some of them even if it then failed, so from now on a removal of
 * any of these children must be reported; they stay pending until commit. */
void scout_cache_delivered(scout_cache_t *c);
/* The policy accepted every pending change; their data is let go. */
void scout_cache_commit(scout_cache_t *c);

#endif
