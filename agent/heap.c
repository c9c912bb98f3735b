/*
 * heap.c -- the start's memory made resident in big steps (see heap.h).
 *
 * glibc grows its main arena with brk, by the request plus M_TOP_PAD; the
 * break is the only thing that says it grew, and sbrk(0) reads it without
 * a system call.  So _start raises the pad to a step, _check populates
 * [what was resident, the break) in one MADV_POPULATE_WRITE, and _stop
 * puts the pad back and trims.  Nothing else in the process moves the
 * break (LuaJIT's own allocator maps, it is not used, see policy.c; ASan's
 * malloc maps too, and then the break never moves and this does nothing).
 */
#include "heap.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23          /* Linux 5.14 */
#endif

#define GLIBC_TOP_PAD (128 * 1024)      /* glibc's DEFAULT_TOP_PAD */

static int    active;
static char  *resident;                 /* the break up to which pages are */
static size_t populated;

void
scout_heap_populate_start(size_t step)
{
#ifdef __GLIBC__
    void *brk = sbrk(0);

    if (active || brk == (void *)-1 || step > INT32_MAX
        || mallopt(M_TOP_PAD, (int)step) == 0)
        return;
    resident = brk;
    populated = 0;
    active = 1;
#else
    (void)step;
#endif
}

void
scout_heap_populate_check(void)
{
    uintptr_t page = 4096, from;
    char *brk;

    if (!active || (brk = sbrk(0)) == resident)
        return;
    if (brk == (void *)-1)
        return;
    if (brk < resident) {               /* trimmed: nothing to populate */
        resident = brk;
        return;
    }
    from = ((uintptr_t)resident + page - 1) & ~(page - 1);
    if ((uintptr_t)brk > from) {
        if (madvise((void *)from, (uintptr_t)brk - from, MADV_POPULATE_WRITE)
            != 0) {
            /* an old kernel: glibc's own growth from here on */
            scout_heap_populate_stop();
            return;
        }
        populated += (uintptr_t)brk - from;
    }
    resident = brk;
}

size_t
scout_heap_populate_stop(void)
{
#ifdef __GLIBC__
    if (active) {
        active = 0;
        mallopt(M_TOP_PAD, GLIBC_TOP_PAD);
        malloc_trim(GLIBC_TOP_PAD);
    }
#endif
    return populated;
}
