/*
 * cs_rocksdb.h - the RocksDB state backend: the working state of a worker in
 * a local RocksDB instance, and native RocksDB checkpoints, full or
 * incremental (SST files shared between checkpoints).
 *
 * The backend implements the vtable of cs_backend.h, so everything written
 * there holds, with these differences:
 *   - A view returned by get stays valid until the next mutating call on the
 *     backend or until 16 more gets, whichever comes first (each view pins a
 *     RocksDB block or value; a read-only loop must not pin without bound).
 *   - A scan iterator reads a consistent snapshot taken when it was made;
 *     mutations after that are not seen and do not invalidate it.
 *   - Operations allocate inside RocksDB, not through cs_malloc, so failing
 *     an allocation on purpose reaches only our own bookkeeping.
 *   - A read-only backend (cs_rocksdb_open_readonly) refuses put, append,
 *     del and the registration of a new state with CS_EINVAL.
 *   - iter_destroy may run after the backend is destroyed (the backend
 *     closes the RocksDB side of live iterators when it goes).
 *
 * Layout. One column family per state, named "<kind>:<name>" (value:, list:
 * or map:), or "<kind>/ttl=<ms>,<update>,<visibility>:<name>" for a state
 * with a time to live, so the registry of states (name, kind, TTL) lives in
 * RocksDB's own MANIFEST and comes back with a checkpoint; state ids are the
 * order of creation (the column family ids). Keys:
 *   VALUE, LIST  kg (2 bytes, big-endian) ++ key
 *   MAP          kg ++ varint(key length) ++ key ++ user key
 * The length makes kg ++ varint ++ key an exact prefix for the user keys of
 * one map key whatever the key bytes are (the contract allows any bytes, not
 * only self-delimiting MessagePack). A LIST append is a RocksDB merge whose
 * operator concatenates operands.
 *
 * The write-ahead log is off. The working directory is scratch: after a
 * failure the job restarts from its last completed checkpoint, and the
 * backend is rebuilt from it into a wiped directory (cs_rocksdb_restore);
 * a working directory is never reopened after a crash, so a WAL would never
 * be read and would only write every record twice. A checkpoint flushes the
 * memtables first, so it holds every write made before it.
 *
 * Memory is bounded per instance: one LRU block cache shared by all column
 * families (index and filter blocks live in it too), memtables capped in
 * total (total_write_buffer_bytes), at most 16 pinned get views, and the
 * write-back cache of VALUE states (value_cache_bytes; up to twice that while
 * a checkpoint stages its files): hot keys are read
 * and updated there, and written to RocksDB in batches, before a checkpoint
 * or a scan, and when the cache is full.
 *
 * The working directory belongs to the backend: it is wiped when the
 * backend is opened (only if it is empty or was made by a backend before:
 * it holds the file "cs-workdir"; any other non-empty directory is refused)
 * and removed by destroy.
 *
 * Errors: functions with err/errlen write a message naming the directory or
 * file at fault (always NUL-terminated when errlen > 0). Vtable operations,
 * which have no message buffer, log a RocksDB failure on stderr and return
 * CS_EIO.
 */
#ifndef CS_ROCKSDB_H
#define CS_ROCKSDB_H

#include "cs_backend.h"

/* Tuning. A zero field takes its default, so {0} is the default set. */
typedef struct cs_rocksdb_options {
  size_t block_cache_bytes;  /* LRU block cache of the instance; 64 MiB */
  size_t write_buffer_bytes; /* one memtable; 16 MiB */
  int max_write_buffers;     /* memtables per state; 2 */
  /* all memtables of the instance together; write_buffer_bytes *
   * max_write_buffers. Past it the largest memtable is flushed. */
  size_t total_write_buffer_bytes;
  int max_open_files;      /* SST files kept open; 0: no limit */
  int max_background_jobs; /* flushes and compactions at once; 2 */
  /* the write-back cache of VALUE states (see cs_rocksdb_cache.c); 32 MiB;
   * SIZE_MAX: no cache */
  size_t value_cache_bytes;
} cs_rocksdb_options;

/* The file a checkpoint directory holds besides RocksDB's own files: the
 * checkpoint's manifest (see cs_rocksdb_checkpoint). */
#define CS_ROCKSDB_MANIFEST_FILE "cs-manifest"

/* Opens a new, empty instance in workdir (created with its parents; wiped
 * first when it exists, see above). o may be NULL for the defaults. On
 * success *out is the backend; the caller frees it with (*out)->ops->destroy,
 * which also removes workdir. */
int cs_rocksdb_backend_open(const char *workdir, const cs_rocksdb_options *o,
                            cs_backend **out, char *err, size_t errlen);

/* Takes a native checkpoint of be into chk_dir, which must not exist (its
 * parent must). RocksDB flushes the memtables and hard-links the live files
 * into a staging directory inside the working directory; from there they
 * are moved (renamed, or copied across file systems) to chk_dir and
 * shared_dir, so only files that must be written anew cost any I/O.
 *
 * shared_dir NULL: a full checkpoint, chk_dir holds every file.
 * shared_dir given (incremental): every SST file goes to shared_dir, and
 * chk_dir keeps only RocksDB's small private files (CURRENT, MANIFEST-*,
 * OPTIONS-*, an empty WAL). An SST file is named in shared_dir
 * "<lineage>-<sst name>", lineage being 16 hex digits drawn at random when
 * the backend was opened or restored; an SST file that came from the
 * checkpoint this backend was restored from keeps the shared name it had.
 * (SST numbers repeat with other contents in backends restored from the same
 * checkpoint, hence the lineage.) A shared file that already exists is not
 * copied or moved again: that is what makes a checkpoint after a small change
 * cheap. The engine must not delete shared files while a checkpoint is being
 * taken into the same shared_dir.
 *
 * The manifest, a short text, is written to chk_dir/cs-manifest (fsynced
 * with chk_dir and shared_dir) and, when manifest is not NULL, also appended
 * to *manifest, so the engine can record which shared files the checkpoint
 * references without reading chk_dir. The file is what restore reads:
 *   cstream-rocksdb-checkpoint 1
 *   lineage <16 hex>
 *   file <name> <size> <XXH3-64 hex>      a private file in chk_dir
 *   sst <name> <size> <XXH3-64 hex>       an SST file in chk_dir (full)
 *   shared <name> <shared name> <size> <XXH3-64 hex>
 *                                         an SST file in shared_dir
 *   end <entry count> <XXH3-64 hex of every byte before this line>
 * (Manifests written before SST checksums existed have no hash on sst and
 * shared lines; they are still read, and only sizes are checked.) An SST
 * file is hashed once in the life of a backend, when a checkpoint first
 * takes it; a restored backend knows the hashes of the files it came with.
 * On failure chk_dir is removed and *manifest is cut back; files already
 * moved into shared_dir stay (no manifest references them).
 *
 * Files in chk_dir and shared_dir are usually hard links to the live files
 * of working directories (this backend's, and those of backends restored
 * from them): delete or replace them, never modify them in place. */
int cs_rocksdb_checkpoint(cs_backend *be, const char *chk_dir,
                          const char *shared_dir, cs_buf *manifest, char *err,
                          size_t errlen);

/* The same checkpoint in two phases, so that the thread that owns the
 * backend stops only for the first (Flink's synchronous and asynchronous
 * parts of a snapshot):
 *
 * cs_rocksdb_checkpoint_begin, on the backend's thread, takes the
 * checkpoint's point in time: it copies the dirty entries of the value
 * cache into a write batch (marking them clean) and makes the backend
 * exclusive to the checkpoint, which costs no I/O and no RocksDB call.
 * cs_rocksdb_checkpoint_finish, on any thread, writes that batch, has
 * RocksDB flush and hard-link its files into the staging directory, ends
 * the exclusive phase, then places the files, hashes the new SST files and
 * writes and fsyncs the manifest exactly as cs_rocksdb_checkpoint does
 * (same arguments, same result, same cleanup on failure).
 *
 * Between the two the backend stays usable by its thread: reads, and the
 * puts and deletes of VALUE states that the value cache absorbs, go on;
 * anything that would write RocksDB itself before the checkpoint's files
 * are staged (a LIST append, a MAP write, a new state, an eviction of the
 * cache, a scan) waits until then, so the checkpoint holds exactly the
 * writes made before begin. One checkpoint at a time: begin while another
 * is not destroyed is CS_EINVAL. The backend must outlive the checkpoint
 * object. cs_rocksdb_snap_destroy (accepts NULL, any thread) frees it; an
 * unfinished one first writes its batch so that the backend loses nothing.
 * A failure to write the batch leaves the backend unusable for writes
 * (CS_EIO from then on): the job fails rather than run on lost state. */
typedef struct cs_rocksdb_snap cs_rocksdb_snap;
int cs_rocksdb_checkpoint_begin(cs_backend *be, const char *chk_dir,
                                const char *shared_dir, cs_rocksdb_snap **out,
                                char *err, size_t errlen);
int cs_rocksdb_checkpoint_finish(cs_rocksdb_snap *s, cs_buf *manifest,
                                 char *err, size_t errlen);
void cs_rocksdb_snap_destroy(cs_rocksdb_snap *s);

/* State TTL (cs_ttl.h). The column family of a TTL state has a compaction
 * filter that drops expired entries (and the expired elements of lists) as
 * RocksDB compacts; cleanup_expired does nothing. A checkpoint is RocksDB's
 * own files, so it holds the expired entries that no compaction has
 * dropped yet: reads never return them (every timestamp is checked), and
 * the backend restored from it drops them in its own compactions.
 *
 * Compacts every column family, memtables and the value cache included, so
 * that every entry passes the compaction filters: for tests and tools
 * (RocksDB compacts on its own as data grows). Views returned by get end,
 * as after a mutating call. */
int cs_rocksdb_compact(cs_backend *be, char *err, size_t errlen);

/* Calls fn once per shared file a manifest references (the shared name, a
 * NUL-terminated file name inside shared_dir). Returns 0, or CS_EDECODE
 * for a corrupt or truncated manifest, in which case fn is never called. */
int cs_rocksdb_manifest_files(const char *manifest, size_t len,
                              void (*fn)(void *ud, const char *shared_name),
                              void *ud);

/* Builds workdir (wiped first, as for cs_rocksdb_backend_open) from the
 * checkpoint in chk_dir and the shared files its manifest names, by hard
 * links where possible and copies otherwise, then opens it. The new backend
 * gets a new lineage. A missing file is CS_ENOTFOUND and a file of the wrong
 * size (or, for the small private files, checksum) CS_EDECODE, with a
 * message naming the file; on any error workdir is removed. SST files are
 * linked, not read, so their content is not checked here: run
 * cs_rocksdb_verify first for that. */
int cs_rocksdb_restore(const char *workdir, const char *chk_dir,
                       const char *shared_dir, const cs_rocksdb_options *o,
                       cs_backend **out, char *err, size_t errlen);

/* Checks every file the manifest of chk_dir names, in chk_dir or
 * shared_dir, without changing anything: size, and content against the
 * XXH3-64 the manifest records (every file is read). Returns 0, CS_ENOTFOUND
 * for a missing file, CS_EDECODE for a damaged manifest or a file of the
 * wrong size or content, with a message naming the file. */
int cs_rocksdb_verify(const char *chk_dir, const char *shared_dir, char *err,
                      size_t errlen);

/* Opens a checkpoint for reading (to copy its entries into other backends
 * with scan_iter when a job is restored at another parallelism): the files
 * are linked into scratch_dir as for cs_rocksdb_restore, and the instance is
 * opened read-only. Destroying the backend removes scratch_dir. */
int cs_rocksdb_open_readonly(const char *chk_dir, const char *shared_dir,
                             const char *scratch_dir, cs_backend **out,
                             char *err, size_t errlen);

#endif /* CS_ROCKSDB_H */
