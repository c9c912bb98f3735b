/*
 * heap.h -- the start's memory made resident in big steps, not page by page.
 *
 * Why: a cold start at 10,000 services touches ~50 MB of fresh heap (the
 * policy's Lua heap, the services, the snapshot's endpoints), and on a VM
 * each first touch of a page is a fault of ~14 us: about half of the start's
 * CPU.  Populated in one madvise() per step the same pages cost a tenth of
 * that.  Between _start and _stop the C heap (glibc's main arena, which the
 * policy's Lua heap also lives in) grows a step at a time, and every
 * _check makes what it grew by resident.  After _stop the heap is glibc's
 * again and what the start reserved but did not use is given back, so the
 * running agent's RSS is what it uses.
 *
 * What this module must never do: touch memory the heap does not own, or
 * fail the start: without glibc, or on a kernel without
 * MADV_POPULATE_WRITE (5.14), it does nothing.
 */
#ifndef SCOUT_HEAP_H
#define SCOUT_HEAP_H

#include <stddef.h>

/* The agent's step: ~1,000 pages a call (a 10,000-service start is ~50 MB);
 * at most that much is resident and unused when _stop trims it. */
#define SCOUT_HEAP_STEP (4u << 20)

/* From now on the heap grows `step` bytes at a time. */
void scout_heap_populate_start(size_t step);

/* Makes resident what the heap grew by since the last call: cheap (one
 * compare) when it did not grow, so loops that allocate call it often. */
void scout_heap_populate_check(void);

/* Back to glibc's growth, the unused end of the heap returned; the bytes
 * made resident in steps, for the log. */
size_t scout_heap_populate_stop(void);

#endif
