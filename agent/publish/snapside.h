/*
 * snapside.h -- the side file next to the disk snapshot
 * (CACHE_DIR/scout.snapshot.policy): which policy wrote the snapshot, so
 * that a restart may serve the snapshot before its policy is loaded (issue
 * 14, api/early.h) and only when that policy is the one about to load.
 *
 * It holds a fingerprint (XXH64) of what decides the answers: every file
 * the policy loaded (path and content), the command-line overrides and the
 * resolved API address; the API address (where to listen before the
 * policy says it); the checksum of the snapshot it goes with (a side file
 * never vouches for another snapshot: a crash between the two renames
 * leaves a mismatch, which means a normal start); and the services in the
 * policy's order with their paths (what the loaded agent would list).
 * The file checksums itself; anything wrong with it = a normal start.
 *
 * Layout (little-endian): "SCOUTSDE", u32 version (1), u32 0, u64
 * snapshot checksum, u64 fingerprint, str listen, u32 nfiles, str file *
 * nfiles, u32 nservices, (str name, str path) * nservices, u64 XXH64 of
 * all the bytes before it.  str = u32 length + bytes.
 */
#ifndef SCOUT_SNAPSIDE_H
#define SCOUT_SNAPSIDE_H

#include <stddef.h>
#include <stdint.h>

#define SCOUT_SNAPSIDE_FILE "scout.snapshot.policy"
#define SCOUT_SNAPSIDE_TMP  "scout.snapshot.policy.tmp"

/* What besides the policy's files decides the answers: the overrides as
 * given (NULL: not given) and the API address the policy resolved to. */
typedef struct {
    const char *zk, *zk_env;            /* --zk, $SCOUT_ZK        */
    const char *api;                    /* --api                  */
    const char *cache_dir;              /* --cache-dir            */
    const char *lua_dir, *lua_dir_env;  /* --lua-dir, $SCOUT_LUA_DIR */
    const char *lua_path_env;           /* $LUA_PATH: where modules are */
    const char *listen;                 /* resolved api.listen    */
} scout_snapside_inputs_t;

/* The fingerprint of these inputs and of the files' current contents.
 * SCOUT_ERROR (reason in err) when a file cannot be read. */
int scout_snapside_fingerprint(const scout_snapside_inputs_t *in,
                               const char *const *files, int nfiles,
                               uint64_t *fp, char *err);

/* The file's bytes (malloc'd, *len), for snapshot checksum sum; NULL when
 * out of memory. */
char *scout_snapside_encode(uint64_t fp, uint64_t sum, const char *listen,
                            const char *const *files, int nfiles,
                            const char *const *names,
                            const char *const *paths, int n, size_t *len);

/* The same bytes made in pieces: the header, then each of the n services
 * in order (a service at a time, so a caller may spread them over loop
 * iterations), then the end: the bytes (malloc'd, *len; the encoder is
 * freed) or NULL when out of memory or not n services were added.  The
 * strings are copied as they are added. */
typedef struct scout_snapside_enc_s scout_snapside_enc_t;
scout_snapside_enc_t *scout_snapside_enc_new(uint64_t fp, uint64_t sum,
                                             const char *listen,
                                             const char *const *files,
                                             int nfiles, int n);
void  scout_snapside_enc_add(scout_snapside_enc_t *e, const char *name,
                             const char *path);
char *scout_snapside_enc_end(scout_snapside_enc_t *e, size_t *len);
void  scout_snapside_enc_free(scout_snapside_enc_t *e);

/* The same bytes vouching for another snapshot (sum), in place. */
void scout_snapside_set_sum(char *buf, size_t len, uint64_t sum);

/* DIR/scout.snapshot.policy from buf: a temp file renamed over it (fsync'd
 * first when durable).  Blocking. */
int scout_snapside_write(const char *dir, const void *buf, size_t len,
                         int durable, char *err);

/* The checksum field of the snapshot file at path (its header only). */
int scout_snapside_snapshot_sum(const char *path, uint64_t *sum, char *err);

typedef struct {
    uint64_t      sum, fp;
    const char   *listen;
    int           nfiles, n;
    const char  **files;
    const char  **names, **paths;   /* [n], the policy's order */
    char         *buf_;             /* owns every string */
} scout_snapside_t;

/* Read and check DIR's side file; NULL with the reason in err. */
scout_snapside_t *scout_snapside_read(const char *dir, char *err);
scout_snapside_t *scout_snapside_parse(const void *buf, size_t len,
                                       char *err);
void scout_snapside_free(scout_snapside_t *s);

#endif
