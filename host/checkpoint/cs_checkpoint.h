/*
 * cs_checkpoint.h - checkpoints: what one completed checkpoint holds, its
 * _metadata file, and the coordinator's bookkeeping of acknowledgements.
 *
 * A checkpoint n of a job lives in <dir>/<job>/chk-<n>/: one state file per
 * stateful operator subtask (a backend snapshot, or for RocksDB a directory
 * of a native checkpoint) and _metadata, written last, to a temporary name,
 * fsynced and renamed: a checkpoint without _metadata never completed and is
 * never restored. With the memory backend the same record is kept in the
 * coordinator's memory instead, with the snapshot bytes inline.
 *
 * _metadata is text, one record per line, tokens percent-encoded:
 *   cstream-checkpoint 1
 *   job <name>
 *   checkpoint <n>
 *   kind checkpoint|savepoint
 *   backend memory|filesystem|rocksdb
 *   max-parallelism <m>
 *   op <operator id> <parallelism>
 *   state <operator id> <subtask> <file relative to the checkpoint dir>
 *         <size> <XXH3-64 hex>
 *   source <operator id> <subtask> <position>
 *   end <XXH3-64 of every byte before this line, hex>
 * A source position is "elements <next index>", "file <start>:<end>,..."
 * (the byte ranges still to read) or "none". The size and checksum of a
 * state file are those of the file; for a RocksDB part (a directory
 * "<op>-<subtask>.rocksdb"), those of its manifest, which in turn records
 * the size and checksum of every file of the part (cs_rocksdb.h). Metadata
 * written before checksums existed has state lines without the last two
 * tokens; it is still read, and such parts are not verified.
 */
#ifndef CS_CHECKPOINT_H
#define CS_CHECKPOINT_H

#include <stdint.h>

#include "state/cs_common.h"

/* The state of one operator subtask in a checkpoint. */
typedef struct cs_ckpt_part {
  char *op_id;
  int subtask;
  char *file;   /* relative to the checkpoint dir, or NULL */
  cs_buf bytes; /* inline snapshot (memory backend), else empty */
  char *source; /* source position, or NULL */
  int has_sum;  /* size and hash below are known */
  uint64_t size;  /* of file (for a RocksDB part, of its manifest) */
  uint64_t hash;  /* XXH3-64 of the same bytes */
} cs_ckpt_part;

/* One completed (or loaded) checkpoint. */
typedef struct cs_ckpt {
  int64_t id;
  int savepoint;
  char *job;
  char *backend;
  char *dir; /* its directory, or NULL when held in memory */
  int max_parallelism;
  int nops;
  struct cs_ckpt_op {
    char *id;
    int parallelism;
  } *ops;
  int nparts;
  cs_ckpt_part *parts;
} cs_ckpt;

cs_ckpt *cs_ckpt_create(void);
void cs_ckpt_destroy(cs_ckpt *c); /* accepts NULL */

/* Adds a part (takes ownership of nothing: strings are copied, bytes are
 * moved out of *bytes when not NULL). Returns 0 or CS_ENOMEM. */
int cs_ckpt_add_part(cs_ckpt *c, const char *op_id, int subtask,
                     const char *file, cs_buf *bytes, const char *source);
/* Records the size and XXH3-64 of the file of the part last added. */
void cs_ckpt_set_sum(cs_ckpt *c, uint64_t size, uint64_t hash);
/* Records an operator and its parallelism (once per id). */
int cs_ckpt_add_op(cs_ckpt *c, const char *op_id, int parallelism);
/* The parallelism the operator had, or 0 when the checkpoint has no such
 * operator. */
int cs_ckpt_op_parallelism(const cs_ckpt *c, const char *op_id);
/* The part of (op, subtask), or NULL. */
const cs_ckpt_part *cs_ckpt_find(const cs_ckpt *c, const char *op_id,
                                 int subtask);

/* Writes c's _metadata into c->dir (temporary file, fsync, rename, fsync
 * of the directory). Returns 0 or a negative error with a message. */
int cs_ckpt_write_metadata(const cs_ckpt *c, char *err, size_t errlen);

/* Reads <dir>/_metadata. Returns 0 with *out (caller destroys), or an error
 * with a message naming the file and what is wrong with it. */
int cs_ckpt_read(const char *dir, cs_ckpt **out, char *err, size_t errlen);

/* Checks that every state file of a checkpoint read from disk is whole:
 * present, with the size and XXH3-64 its _metadata records; for a RocksDB
 * part, also every file its manifest names (in the part's directory or in
 * <job dir>/shared), each read in full. Returns 0, or CS_ENOTFOUND or
 * CS_EDECODE with a message naming the file, and the index of the part in
 * *bad_part when not NULL. Changes nothing on disk. */
int cs_ckpt_verify(const cs_ckpt *c, int *bad_part, char *err, size_t errlen);

/* Finds the newest complete and intact checkpoint under <base>/<job>/:
 * chk-N with a readable _metadata whose files pass cs_ckpt_verify. A
 * damaged one is skipped with a message on stderr naming the file at fault.
 * Returns the checkpoint read (caller destroys) or NULL when there is none. */
cs_ckpt *cs_ckpt_find_latest(const char *base, const char *job);

/* The N of every chk-N entry of job_dir, newest first, in *out (caller
 * frees with cs_free; NULL when there is none). Returns the count, or -1
 * when out of memory. */
int cs_ckpt_list_ids(const char *job_dir, long long **out);

/* <parent of c->dir>/shared: where the incremental RocksDB checkpoints of
 * c's job keep their SST files. */
void cs_ckpt_shared_dir(const cs_ckpt *c, char *buf, size_t len);

/* Keeps the newest `keep` complete checkpoints (chk-N with a _metadata) of
 * job_dir whose N is at most newest, and removes every other chk-N with N
 * below newest: older checkpoints of this run and of earlier ones, damaged
 * ones, and directories left incomplete. Savepoints are never touched.
 * A checkpoint's _metadata is removed before its other files, so a reader
 * without a lock never takes a checkpoint being removed for a complete
 * one. Returns the number of directories removed. */
int cs_ckpt_retain(const char *job_dir, int64_t newest, int keep);

/* Deletes the files of <job_dir>/shared that no chk-* or savepoint-*
 * directory under job_dir references (RocksDB incremental checkpoints).
 * Returns the number deleted, or -1 when a manifest could not be read (then
 * nothing is deleted). Must not run while a checkpoint is being taken. */
int cs_ckpt_gc_shared(const char *job_dir);

/* The highest N of the chk-N and savepoint-N directories in job_dir (0 when
 * none), so a new run never reuses a directory. */
int64_t cs_ckpt_max_id(const char *job_dir);

/* Removes RocksDB working directories "cstream-<pid>-<n>" under base whose
 * process no longer exists (left by a killed run). */
void cs_ckpt_remove_stale_workdirs(const char *base);

/* Removes the chk-N directories of job_dir that have no _metadata: left by
 * a run that was killed while taking them (none is in progress then). */
void cs_ckpt_remove_incomplete(const char *job_dir);

/* The bytes of the files below path (or of the file path). */
long long cs_dir_size(const char *path);

/* Removes a checkpoint directory and everything in it. */
int cs_ckpt_remove_dir(const char *dir);

/* Writes a file durably: temporary name, fsync, rename, fsync of the
 * directory. Returns 0 or a negative error (errno text in err). */
int cs_write_file_durable(const char *path, const void *data, size_t len,
                          char *err, size_t errlen);

/* Reads a whole file into out. Returns 0 or a negative error. */
int cs_read_file(const char *path, cs_buf *out, char *err, size_t errlen);

/* mkdir -p. Returns 0 or a negative error. */
int cs_mkdirs(const char *path, char *err, size_t errlen);

#endif /* CS_CHECKPOINT_H */
