/*
 * cs_rocksdb_int.h - internal to the RocksDB backend: the types and helpers
 * its source files share. Not a public interface: everything outside the
 * backend includes cs_rocksdb.h, and only the backend's own files include
 * this one.
 *
 * The backend's files, by concern:
 *   cs_rocksdb.c             keys, get views, the operations of
 *                            cs_backend.h, iterators, states, destroy
 *   cs_rocksdb_open.c        options, the merge operator, opening an
 *                            instance (new, existing, read-only)
 *   cs_rocksdb_cache.c       the write-back cache of VALUE states
 *   cs_rocksdb_files.c       working directories; reading, copying,
 *                            hashing, syncing and listing files
 *   cs_rocksdb_checkpoint.c  manifests; taking a native checkpoint
 *   cs_rocksdb_restore.c     restore, verify, open a checkpoint read-only
 *   cs_rocksdb_ttl.c         column family names (kind, TTL), the TTL
 *                            compaction filter, compacting on request
 *
 * Every RocksDB call gets its own `char *rerr = NULL` (rerr, because err is
 * the caller's message buffer in the backend's API); an error is mapped to
 * a CS_E* code, logged or put in that buffer with its context, and freed.
 * Memory that RocksDB hands us (error strings) is freed with rocksdb_free.
 */
#ifndef CS_ROCKSDB_INT_H
#define CS_ROCKSDB_INT_H

#include <rocksdb/c.h>
#include <stdatomic.h>
#include <uv.h>

#include "cs_rocksdb.h"
#include "cs_ttl.h"

#define CS__ROCKSDB_PIN_RING 16      /* get views kept alive at once */
#define CS__ROCKSDB_NAME_MAX_LEN 255 /* a file name in a checkpoint */

/* ============================================================== types */

/* A registered state: one column family. */
typedef struct cs__rocksdb_state {
  char *name;
  cs_state_kind kind;
  int has_ttl;
  cs_ttl_config ttl; /* when has_ttl */
  rocksdb_column_family_handle_t *cf;
} cs__rocksdb_state;

/* A local SST file name and the shared name it came from (restored). */
typedef struct cs__rocksdb_shared_ref {
  cs_slice local;
  cs_slice shared;
} cs__rocksdb_shared_ref;

/* The size and XXH3-64 of an SST file of the instance, by its local name:
 * SST files never change and their numbers are never reused, so each is
 * hashed once, when a checkpoint first takes it (or never, when it came
 * with the checkpoint the backend was restored from). */
typedef struct cs__rocksdb_sst_sum {
  char *name;
  uint64_t size;
  uint64_t hash;
} cs__rocksdb_sst_sum;

/* The backend: a RocksDB instance in its working directory. */
typedef struct cs__rocksdb {
  cs_backend base;
  rocksdb_t *db;
  rocksdb_options_t *opts; /* DB and column family options */
  rocksdb_cache_t *cache;
  rocksdb_readoptions_t *ro;
  rocksdb_writeoptions_t *wo;
  cs__rocksdb_state *states;
  int nstates;
  int cap;
  int readonly;
  char *workdir;
  char lineage[17]; /* 16 hex digits */
  /* From the checkpoint this backend was restored from: its manifest text
   * and the (local, shared) names of its shared SST files, by local name. */
  char *restored_text;
  cs__rocksdb_shared_ref *restored;
  size_t nrestored;
  cs__rocksdb_sst_sum *sums; /* sorted by name */
  size_t nsums;
  rocksdb_pinnableslice_t *pins[CS__ROCKSDB_PIN_RING];
  unsigned pin_next;
  unsigned npinned;
  struct cs__rocksdb_iter *iters; /* live iterators */
  /* The write-back cache of VALUE states (cs_rocksdb_cache.c). */
  struct cs__rocksdb_centry *ctab;
  size_t cmask;  /* slots - 1; 0 when no table */
  size_t ccount; /* entries */
  size_t cbytes; /* memory the cache holds */
  size_t climit; /* 0: no cache */
  uint32_t *cdirty; /* slots of the dirty entries, in the order they turned */
  size_t ndirty, cdirty_cap;
  /* An asynchronous checkpoint (cs_rocksdb_checkpoint_begin): while it is
   * exclusive, writes to RocksDB itself wait on xcond. broken: writing the
   * checkpoint's batch failed; the backend refuses writes. */
  uv_mutex_t xlock;
  uv_cond_t xcond;
  atomic_int exclusive;
  atomic_int broken;
  atomic_int snap_live; /* a checkpoint object exists */
} cs__rocksdb;

/* How cs__rocksdb_open_instance opens the instance in its directory. */
enum {
  CS__ROCKSDB_OPEN_NEW,
  CS__ROCKSDB_OPEN_EXISTING,
  CS__ROCKSDB_OPEN_READONLY
};

/* One entry of a checkpoint manifest (see cs_rocksdb.h for the format). */
enum {
  CS__ROCKSDB_ENT_FILE = 1,
  CS__ROCKSDB_ENT_SST = 2,
  CS__ROCKSDB_ENT_SHARED = 3
};

typedef struct cs__rocksdb_mentry {
  int type;
  cs_slice name;
  cs_slice shared; /* CS__ROCKSDB_ENT_SHARED */
  uint64_t size;
  uint64_t hash; /* when has_hash: always for CS__ROCKSDB_ENT_FILE */
  int has_hash;  /* SST lines of manifests before checksums have none */
} cs__rocksdb_mentry;

typedef int (*cs__rocksdb_mvisit)(void *ud, const cs__rocksdb_mentry *e);

/* ============================================= errors (cs_rocksdb.c) */

/* Writes a message into err (when there is room) and returns rc. */
int cs__rocksdb_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* For vtable operations: logs a RocksDB error, frees it, returns CS_EIO. */
int cs__rocksdb_rocks_fail(cs__rocksdb *r, const char *what, char *rerr);
/* For set-up functions: moves a RocksDB error into err and returns rc. */
int cs__rocksdb_rocks_errf(char *err, size_t errlen, int rc, const char *what,
                           const char *where, char *rerr);

/* =========================================================== instance */

/* The vtable of the backend, in cs_rocksdb.c (a backend is ours when it
 * has it). The rest of this section is in cs_rocksdb_open.c. */
extern const cs_backend_ops cs__rocksdb_ops;

/* Makes a backend on the RocksDB instance in dir (a prepared directory),
 * opened as mode (CS__ROCKSDB_OPEN_*). */
int cs__rocksdb_open_instance(const char *dir, const cs_rocksdb_options *o,
                              int mode, cs__rocksdb **out, char *err,
                              size_t errlen);

/* ============================================ TTL (cs_rocksdb_ttl.c) */

/* Writes the column family name of a state into out (reset first):
 * "<kind>:<name>", or "<kind>/ttl=<ms>,<update>,<visibility>:<name>" for a
 * TTL state. Returns 0 or CS_ENOMEM. */
int cs__rocksdb_cf_name(cs_state_kind kind, const cs_ttl_config *ttl,
                        const char *name, cs_buf *out);
/* Parses a column family name: returns the state's kind, with *name the
 * state name (inside cfname) and *has_ttl, *ttl its TTL configuration, or
 * 0 when the name is not one of ours. */
int cs__rocksdb_parse_cf_name(const char *cfname, const char **name,
                              int *has_ttl, cs_ttl_config *ttl);
/* The options of the column family of a TTL state: a copy of base with
 * the compaction filter that drops entries expired under ttl. The caller
 * destroys it once the column family is created or opened (which keeps
 * what it needs). NULL when out of memory. */
rocksdb_options_t *cs__rocksdb_ttl_options(rocksdb_options_t *base,
                                           cs_state_kind kind,
                                           const cs_ttl_config *ttl);

/* =================================== value cache (cs_rocksdb_cache.c) */

/* The cache holds VALUE states only, and only when r->climit is not 0; k
 * is the composite key (kg ++ key) of state. A view handed out stays
 * valid until the next mutating call, as a view of RocksDB does. */

/* Looks k up: returns 1 with *val its value, CS_ENOTFOUND when the cache
 * knows it deleted, 0 when the cache does not hold it. */
int cs__rocksdb_cache_get(cs__rocksdb *r, int state, const char *k, size_t n,
                          cs_slice *val);
/* Keeps a clean copy of *val, just read from RocksDB, when the budget has
 * room; then points *val at the copy and returns 1, else returns 0. */
int cs__rocksdb_cache_keep(cs__rocksdb *r, int state, const char *k,
                           size_t n, cs_slice *val);
/* Sets (put) or deletes (del) k in the cache, dirty; writes the cache out
 * and empties it when it is over budget. Returns 0, CS_ENOMEM or CS_EIO;
 * a del that fails for memory has changed nothing. */
int cs__rocksdb_cache_put(cs__rocksdb *r, int state, const char *k, size_t n,
                          cs_slice val);
int cs__rocksdb_cache_del(cs__rocksdb *r, int state, const char *k,
                          size_t n);
/* Writes the dirty entries in one batch; with drop, empties the cache too.
 * Returns 0 or CS_EIO. */
int cs__rocksdb_cache_flush(cs__rocksdb *r, int drop);
/* Moves the dirty entries into a new write batch (*wb, NULL when there are
 * none) and marks them clean, for an asynchronous checkpoint. Returns 0 or
 * CS_ENOMEM (nothing changed then). */
int cs__rocksdb_cache_take(cs__rocksdb *r, rocksdb_writebatch_t **wb);
/* Frees the cache without writing it (the backend is being destroyed). */
void cs__rocksdb_cache_free(cs__rocksdb *r);

/* Waits while an asynchronous checkpoint is exclusive (cs_rocksdb.h), then
 * returns CS_EIO when the backend is broken, else 0. Called before every
 * write to RocksDB itself and before the cache drops entries. */
int cs__rocksdb_wait_writable(cs__rocksdb *r);

/* ========================================= files (cs_rocksdb_files.c) */

/* Writes dir/name into buf[cap]; CS_EINVAL when it does not fit. */
int cs__rocksdb_path_join(char *buf, size_t cap, const char *dir,
                          const char *name);
/* Removes path and everything below it (following no symlinks): 0 or -1. */
int cs__rocksdb_remove_tree(const char *path);
/* Makes dir an empty working directory of ours (created, or wiped when it
 * is empty or ours; refused otherwise), with the marker file in it. */
int cs__rocksdb_prepare_dir(const char *dir, char *err, size_t errlen);
/* Removes a working directory (its content only, when it is a symlink). */
void cs__rocksdb_remove_workdir(const char *dir);
/* fsyncs path (a directory when dir): 0, or -1 with errno set. */
int cs__rocksdb_fsync_path(const char *path, int dir);
/* fsyncs the directory that holds path: 0, or -1 with errno set. */
int cs__rocksdb_fsync_parent(const char *path);
/* Writes all of p[0, n) to fd: 0, or -1 with errno set. */
int cs__rocksdb_write_all(int fd, const char *p, size_t n);
/* Maps a failed open (errno) of a checkpoint file to CS_ENOTFOUND or
 * CS_EIO with a message naming it. */
int cs__rocksdb_open_errf(char *err, size_t errlen, const char *path);
/* Reads all of src, reporting its size and XXH3-64 (either may be NULL),
 * and copies it to a new file dst unless dst is NULL (fsynced when sync). */
int cs__rocksdb_copy_hash(const char *src, const char *dst, int sync,
                          uint64_t *size, uint64_t *hash, char *err,
                          size_t errlen);
/* Hard-links src to dst, or copies it where links cannot be made. */
int cs__rocksdb_link_or_copy(const char *src, const char *dst, int sync,
                             char *err, size_t errlen);
/* Reads a whole file into b (a manifest: CS_EDECODE past 64 MiB). */
int cs__rocksdb_read_small_file(const char *path, cs_buf *b, char *err,
                                size_t errlen);
/* Lists the names in dir, sorted, without "." and ".."; the caller frees
 * them with cs__rocksdb_free_names. */
int cs__rocksdb_list_dir(const char *dir, char ***out, size_t *count,
                         char *err, size_t errlen);
void cs__rocksdb_free_names(char **names, size_t n);

/* =============================== checkpoint (cs_rocksdb_checkpoint.c) */

/* Checks a whole manifest (frame, checksum, every line) and then, when
 * visit is not NULL, calls it for each entry. Returns 0, CS_EDECODE, or
 * what visit returned. */
int cs__rocksdb_manifest_parse(const char *d, size_t len,
                               cs__rocksdb_mvisit visit, void *ud);
/* The qsort and bsearch order of shared refs: by local name. */
int cs__rocksdb_ref_cmp_local(const void *pa, const void *pb);
/* The qsort and bsearch order of SST sums: by name. */
int cs__rocksdb_sum_cmp(const void *pa, const void *pb);
/* Frees n SST sums and their array. */
void cs__rocksdb_free_sums(cs__rocksdb_sst_sum *sums, size_t n);

#endif /* CS_ROCKSDB_INT_H */
