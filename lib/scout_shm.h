/*
 * scout_shm.h -- read the agent's shared-memory snapshot (build/libscout.so).
 *
 * The agent (agent/publish/shm.c) publishes every service it watches into one file
 * under /dev/shm; readers on the host (nginx workers through LuaJIT FFI, any C
 * program) map it read-only.  docs/shm.md is the format in full; this header
 * is its C form and the reader's whole interface.
 *
 * Reading is two steps.  scout_shm_reader_generation() is one 8-byte load
 * from the mapping: call it as often as you like (per request) to learn
 * whether anything moved.  When it did, scout_shm_reader_copy() copies the
 * current snapshot out of the mapping into memory you own, checks that the
 * writer did not touch it meanwhile (generation before and after, XXH3-64
 * checksum) and that every count, range and string in it is in bounds.  The
 * copy is then plain immutable data, walked with the record types and
 * accessors below; nothing in it points back into the mapping.
 *
 * A reader never blocks the writer and never takes a lock; the writer never
 * waits for readers.  A reader that loses the race (the writer published
 * twice while it copied) gets SCOUT_SHM_AGAIN and simply tries again.
 *
 * Who frees: a reader is freed by scout_shm_reader_close(); buffers passed to
 * scout_shm_reader_copy() are the caller's; the snapshot returned by
 * scout_shm_reader_read() is the reader's, valid until its next read or close.
 */
#ifndef SCOUT_SHM_H
#define SCOUT_SHM_H

#include <stddef.h>
#include <stdint.h>

/* Same values as the agent's SCOUT_OK/ERROR/AGAIN and SCOUT_ERR_LEN. */
#define SCOUT_SHM_OK       0
#define SCOUT_SHM_ERROR   -1
#define SCOUT_SHM_AGAIN   -2   /* torn: the writer lapped this read; retry */
#define SCOUT_SHM_SHORT   -3   /* buffer too small; *len is the size needed */
#define SCOUT_SHM_ERR_LEN 256

/* ---- the file (docs/shm.md, "File") ---------------------------------- */

#define SCOUT_SHM_MAGIC        "SCOUTSHM"  /* 8 bytes, no terminator */
#define SCOUT_SHM_VERSION      2           /* what the agent writes */
#define SCOUT_SHM_VERSION_MIN  1           /* the oldest this reader reads */
#define SCOUT_SHM_HDR_SIZE     4096        /* slot 0 starts here */
#define SCOUT_SHM_SLOT_HDR     64          /* slot header, then the body */
#define SCOUT_SHM_CHUNK        65536       /* v2: body bytes per checksum */

/* Offset 0 of the file.  generation and retired are written by the agent
 * while readers look (8-byte aligned, atomic); the rest never changes once
 * the file has been renamed into place. */
typedef struct {
    char     magic[8];
    uint32_t version;
    uint32_t header_size;     /* SCOUT_SHM_HDR_SIZE */
    uint64_t generation;      /* current snapshot, in slot generation & 1 */
    uint64_t slot_size;       /* bytes per slot, slot header included */
    uint64_t file_size;       /* header_size + 2 * slot_size */
    uint32_t retired;         /* 1: a newer file replaced this one */
    uint32_t writer_pid;      /* informational */
    /* version 2 (all 0 in a version 1 file): the body is checksummed in
     * chunks of chunk_size bytes, their XXH3-64s a table of u64 at
     * table_off in each slot, room for table_max of them */
    uint32_t chunk_size;
    uint32_t table_max;
    uint64_t table_off;       /* from the slot's start */
} scout_shm_file_t;

/* Start of each slot: a per-slot sequence, then the body. */
typedef struct {
    uint64_t seq;             /* generation the body holds; 0 while written */
    uint64_t len;             /* body bytes */
    uint64_t checksum;        /* XXH3-64 (seed 0): v1 of the body, v2 of
                                 the table of its chunks' XXH3-64s */
    uint64_t reserved[5];
} scout_shm_slot_t;

/* ---- the snapshot body (docs/shm.md, "Snapshot") ---------------------- */

/* Body = snap header, services[], endpoints[], meta[], strings.  Services
 * are sorted by name, each service's endpoints by id (byte order); a
 * service's endpoints and an endpoint's meta are contiguous runs.  A string
 * is (offset, length) into the strings area and is also NUL-terminated there;
 * settings is opaque bytes (may hold NULs: trust len). */
typedef struct {
    uint32_t off;
    uint32_t len;
} scout_shm_str_t;

typedef struct {
    uint64_t generation;
    uint64_t size;
    uint32_t nservices;
    uint32_t nendpoints;
    uint32_t nmeta;
    uint32_t strings_len;
} scout_shm_snap_t;

typedef struct {
    scout_shm_str_t name;
    scout_shm_str_t path;
    scout_shm_str_t state;
    scout_shm_str_t settings;
    uint64_t index;
    uint32_t ep_first;
    uint32_t ep_count;
} scout_shm_svc_t;

typedef struct {
    scout_shm_str_t id;
    scout_shm_str_t host;
    scout_shm_str_t status;
    int32_t port;
    int32_t weight;
    int64_t zxid;
    uint32_t meta_first;
    uint32_t meta_count;
} scout_shm_ep_t;

typedef struct {
    scout_shm_str_t key;
    scout_shm_str_t value;
} scout_shm_meta_t;

/* ---- the reader ------------------------------------------------------ */

typedef struct scout_shm_reader_s scout_shm_reader_t;

typedef struct {
    uint64_t reads;           /* snapshots copied and validated */
    uint64_t retries;         /* attempts lost to the writer (torn) */
    uint64_t checksum_failures;
    uint64_t remaps;          /* times a new file was mapped */
} scout_shm_stats_t;

#pragma GCC visibility push(default)

/* A reader for the snapshot at path.  The file need not exist yet: the
 * reader attaches when it appears (generation() is 0 until then).  NULL
 * with err filled only for a bad path or out of memory. */
scout_shm_reader_t *scout_shm_reader_open(const char *path, char *err);
void scout_shm_reader_close(scout_shm_reader_t *r);

/* The generation of the newest snapshot, 0 if none yet: one 8-byte load,
 * no syscall.  A change means "call copy()".  It cannot see a file replaced
 * behind a crashed agent; moved() can. */
uint64_t scout_shm_reader_generation(const scout_shm_reader_t *r);

/* 1 if copy() would map another file (the path names a new file, or this
 * one is retired, or nothing is mapped yet and the file exists), else 0.
 * One stat(); meant for a slow timer (every second or so). */
int scout_shm_reader_moved(scout_shm_reader_t *r);

/* Copy the current snapshot into buf (8-byte aligned, cap bytes) and
 * validate it.  SCOUT_SHM_OK: buf holds *len bytes, a scout_shm_snap_t at
 * its start.  SCOUT_SHM_SHORT: cap < *len, grow and call again.
 * SCOUT_SHM_AGAIN: torn (err "torn, retry"), call again.  SCOUT_SHM_ERROR:
 * err says why ("no snapshot", "checksum mismatch", "corrupt snapshot: ..").
 * One attempt: the caller bounds its retries. */
int scout_shm_reader_copy(scout_shm_reader_t *r, void *buf, size_t cap,
                          size_t *len, char *err);

/* copy() into a buffer the reader owns, retrying a torn read a few times.
 * NULL with err on failure; valid until the next read() or close(). */
const scout_shm_snap_t *scout_shm_reader_read(scout_shm_reader_t *r,
                                              char *err);

void scout_shm_reader_stats(const scout_shm_reader_t *r,
                            scout_shm_stats_t *out);

/* The service named name (len bytes) in a validated snapshot, or NULL:
 * binary search, services being sorted by name. */
const scout_shm_svc_t *scout_shm_snap_find(const scout_shm_snap_t *s,
                                           const char *name, size_t len);

/* "type=size type.field=offset ..." for every record type above, as this
 * library was compiled: the Lua spec checks its cdef against it. */
const char *scout_shm_abi(void);

#pragma GCC visibility pop

/* ---- accessors over a validated snapshot ------------------------------ */

static inline const scout_shm_svc_t *
scout_shm_snap_services(const scout_shm_snap_t *s)
{
    return (const scout_shm_svc_t *)(s + 1);
}

static inline const scout_shm_ep_t *
scout_shm_snap_endpoints(const scout_shm_snap_t *s)
{
    return (const scout_shm_ep_t *)(scout_shm_snap_services(s)
                                    + s->nservices);
}

static inline const scout_shm_meta_t *
scout_shm_snap_meta(const scout_shm_snap_t *s)
{
    return (const scout_shm_meta_t *)(scout_shm_snap_endpoints(s)
                                      + s->nendpoints);
}

/* The string's first byte; NUL-terminated, str.len bytes long. */
static inline const char *
scout_shm_str(const scout_shm_snap_t *s, scout_shm_str_t str)
{
    return (const char *)(scout_shm_snap_meta(s) + s->nmeta) + str.off;
}

#endif
