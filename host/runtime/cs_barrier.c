/*
 * cs_barrier.c - checkpoints inside a worker: a source snapshots its
 * position and state when the coordinator triggers a checkpoint and sends
 * the barrier downstream behind its records; a task with several input
 * channels aligns (holds each input that delivered the barrier until all
 * have), snapshots every operator's backend, forwards the barrier and
 * acknowledges to the coordinator.
 */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "host/runtime/cs_runtime_int.h"
#include "state/cs_rocksdb.h"

/* Records a failure to snapshot checkpoint id; the coordinator discards
 * the checkpoint (the job goes on within the tolerated failures). */
static void ckpt_part_failed(cs_job *job, int64_t id, const char *msg) {
  uv_mutex_lock(&job->lock);
  if (job->pending && job->pending->id == id && job->pending_error == NULL)
    job->pending_error = cs_strdup(msg);
  uv_mutex_unlock(&job->lock);
}

/* ================================================ asynchronous parts */

/* A snapshot is taken in two parts, as Flink's are. The synchronous part,
 * on the worker while its records wait, fixes the state at the barrier: a
 * heap backend is serialized into memory, a RocksDB backend copies its
 * dirty cache (cs_rocksdb_checkpoint_begin). The barrier goes on right
 * after it. The asynchronous part, on libuv's thread pool, writes the state
 * files (fsynced) or finishes the RocksDB checkpoint; only then does the
 * subtask acknowledge the checkpoint, so a checkpoint completes only when
 * every part of it is durable. A failure there fails the checkpoint only. */

/* One state file written off the worker. */
typedef struct snap_item {
  int part;              /* its part in the task's parts */
  cs_rocksdb_snap *rs;   /* RocksDB: the checkpoint to finish, or NULL */
  cs_backend *copy;      /* heap: a copy of orig to serialize, or */
  cs_backend *orig;
  cs_buf bytes;          /* the serialized state, to write to path */
  char *path;
  int rc;
  uint64_t size, hash;   /* of the file (RocksDB: of the manifest) */
  char err[512];
} snap_item;

typedef struct cs__snap_task {
  uv_work_t req;
  cs_tinst *t;
  cs_job *job;
  int64_t id;
  cs_ckpt *parts;
  int nitems;
  snap_item *items;
  uint64_t sync_ns;  /* the synchronous part */
  uint64_t async_ns; /* the asynchronous part, on its thread */
  uv_mutex_t mu;
  uv_cond_t cv;
  int ran;   /* the asynchronous part is over (under mu) */
  int acked; /* completed on the worker: after_work only frees it */
} cs__snap_task;

/* Merges a subtask's parts into the pending checkpoint id and counts its
 * acknowledgement; the main thread completes the checkpoint after the
 * last one. */
static void ack_parts(cs_job *job, int64_t id, cs_ckpt *parts,
                      uint64_t sync_ns, uint64_t async_ns) {
  uv_mutex_lock(&job->lock);
  if (job->pending && job->pending->id == id) {
    for (int i = 0; parts && i < parts->nparts; i++) {
      cs_ckpt_part *p = &parts->parts[i];
      if (cs_ckpt_add_op(job->pending, p->op_id,
                         cs_ckpt_op_parallelism(parts, p->op_id)) ||
          cs_ckpt_add_part(job->pending, p->op_id, p->subtask, p->file,
                           &p->bytes, p->source)) {
        if (!job->pending_error) job->pending_error = cs_strdup("out of memory");
      } else if (p->has_sum) {
        cs_ckpt_set_sum(job->pending, p->size, p->hash);
      }
    }
    if (sync_ns > job->pending_sync_max) job->pending_sync_max = sync_ns;
    if (async_ns > job->pending_async_max) job->pending_async_max = async_ns;
    if (++job->pending_acks == job->expected_acks) uv_async_send(job->main_wake);
  }
  uv_mutex_unlock(&job->lock);
}

/* The asynchronous part (a thread of the pool): writes each item. */
static void snap_work(uv_work_t *req) {
  cs__snap_task *k = container_of(req, cs__snap_task, req);
  uint64_t t0 = uv_hrtime();
  /* Fault injection for the specs: a slow asynchronous part, so that they
   * can kill, fail or end a job while it runs. */
  const char *delay = getenv("CSTREAM_TEST_SNAPSHOT_DELAY_MS");
  if (delay && k->nitems > 0 && atoi(delay) > 0)
    uv_sleep((unsigned)atoi(delay));
  for (int i = 0; i < k->nitems; i++) {
    snap_item *it = &k->items[i];
    if (atomic_load(&k->job->failed)) {
      it->rc = CS_ECANCELED;
      snprintf(it->err, sizeof(it->err), "the job is failing");
    } else if (it->rs) {
      cs_buf man = {0};
      it->rc = cs_rocksdb_checkpoint_finish(it->rs, &man, it->err,
                                            sizeof(it->err));
      it->size = man.len;
      it->hash = XXH3_64bits(man.data, man.len);
      cs_buf_free(&man);
    } else {
      if (it->copy) {
        it->rc = cs_backend_snapshot(it->copy, 0, 65535, &it->bytes);
        cs_heap_clone_strip(it->copy); /* its memory goes back to orig */
        if (it->rc) {
          snprintf(it->err, sizeof(it->err), "snapshot of %s failed: %s",
                   it->path, cs_strerror(it->rc));
          continue;
        }
      }
      it->size = it->bytes.len;
      it->hash = XXH3_64bits(it->bytes.data, it->bytes.len);
      it->rc = cs_write_file_durable(it->path, it->bytes.data, it->bytes.len,
                                     it->err, sizeof(it->err));
    }
  }
  k->async_ns = uv_hrtime() - t0;
  uv_mutex_lock(&k->mu);
  k->ran = 1;
  uv_cond_signal(&k->cv);
  uv_mutex_unlock(&k->mu);
}

static void snap_task_free(cs__snap_task *k) {
  for (int i = 0; i < k->nitems; i++) {
    cs_rocksdb_snap_destroy(k->items[i].rs);
    if (k->items[i].copy) k->items[i].copy->ops->destroy(k->items[i].copy);
    cs_buf_free(&k->items[i].bytes);
    cs_free(k->items[i].path);
  }
  cs_free(k->items);
  cs_ckpt_destroy(k->parts);
  uv_cond_destroy(&k->cv);
  uv_mutex_destroy(&k->mu);
  cs_free(k);
}

/* On the worker, once the asynchronous part ran: records each file's sum
 * or failure, frees the RocksDB checkpoint objects (the backend's exclusive
 * phase is over by then) and acknowledges. Runs once per task. */
static void snap_complete(cs__snap_task *k) {
  if (k->acked) return;
  k->acked = 1;
  for (int i = 0; i < k->nitems; i++) {
    snap_item *it = &k->items[i];
    cs_rocksdb_snap_destroy(it->rs);
    it->rs = NULL;
    cs_heap_backend_recycle(it->orig, it->copy);
    it->copy = NULL;
    cs_buf_free(&it->bytes);
    if (it->rc) {
      ckpt_part_failed(k->job, k->id, it->err);
    } else if (it->part < k->parts->nparts) { /* else it was never added */
      cs_ckpt_part *p = &k->parts->parts[it->part];
      p->has_sum = 1;
      p->size = it->size;
      p->hash = it->hash;
    }
  }
  ack_parts(k->job, k->id, k->parts, k->sync_ns, k->async_ns);
  cs_ckpt_destroy(k->parts);
  k->parts = NULL;
  if (k->t->snap == k) k->t->snap = NULL;
  k->t->w->snaps_inflight--;
}

/* On the worker's loop after snap_work: completes the task unless the
 * worker already did (snap_wait), then frees it. Touches nothing else of
 * the worker then: it may run after the worker's teardown. */
static void snap_after_work(uv_work_t *req, int status) {
  cs__snap_task *k = container_of(req, cs__snap_task, req);
  (void)status; /* never cancelled */
  if (!k->acked) {
    snap_complete(k);
    cs_worker_kick(k->t->w); /* a finished worker may now be idle */
  }
  snap_task_free(k);
}

/* Blocks until the asynchronous part of t's snapshot in flight (if any)
 * ran, and completes it: before a new snapshot of the same backends, and
 * before the worker tears them down. */
void cs__tinst_snap_wait(cs_tinst *t) {
  cs__snap_task *k = t->snap;
  if (k == NULL) return;
  uv_mutex_lock(&k->mu);
  while (!k->ran) uv_cond_wait(&k->cv, &k->mu);
  uv_mutex_unlock(&k->mu);
  snap_complete(k);
}

/* Makes the task of t's snapshot id, owning parts. NULL when out of
 * memory (parts is then still the caller's). */
static cs__snap_task *snap_task_new(cs_tinst *t, int64_t id, cs_ckpt *parts,
                                    int cap) {
  cs__snap_task *k = cs_calloc(1, sizeof(*k));
  if (k == NULL) return NULL;
  if ((k->items = cs_calloc((size_t)(cap ? cap : 1), sizeof(snap_item))) == NULL) {
    cs_free(k);
    return NULL;
  }
  uv_mutex_init(&k->mu);
  uv_cond_init(&k->cv);
  k->t = t;
  k->job = t->w->job;
  k->id = id;
  k->parts = parts;
  return k;
}

/* ====================================================== the sync part */

/* The file name of op's part, with '/' and ' ' replaced. */
static void part_file(char *file, size_t cap, const cs_opi *op, const char *ext) {
  snprintf(file, cap, "%s-%d.%s", op->node->id, op->subtask, ext);
  for (char *c = file; *c; c++)
    if (*c == '/' || *c == ' ') *c = '_';
}

/* The synchronous part of one operator's state into a checkpoint
 * directory: fills item k->items[k->nitems] (counted when it has work) for
 * the part parts->nparts - 1 about to be added, and writes its file name.
 * Returns 0, or -1 with a message in err (the checkpoint fails). */
static int op_sync_part(cs__snap_task *k, cs_opi *op, const char *dir,
                        int savepoint, char *file, size_t cap, char *err,
                        size_t errlen) {
  cs_job *job = k->job;
  snap_item *it = &k->items[k->nitems];
  char path[4800];
  it->part = k->parts->nparts;
  if (cs_job_uses_rocksdb(job)) {
    part_file(file, cap, op, "rocksdb");
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    char shared[4800];
    int incremental = job->cfg->incremental && !savepoint && job->ckpt_base;
    if (incremental) snprintf(shared, sizeof(shared), "%s/shared", job->ckpt_base);
    if (incremental && cs_mkdirs(shared, err, errlen)) return -1;
    if (cs_rocksdb_checkpoint_begin(op->be, path, incremental ? shared : NULL,
                                    &it->rs, err, errlen))
      return -1;
  } else {
    part_file(file, cap, op, "state");
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    /* a copy of the tables, serialized off the worker; serialized here
     * when there is no memory for the copy */
    int rc = (it->path = cs_strdup(path)) == NULL ? CS_ENOMEM : 0;
    it->orig = op->be;
    if (rc == 0 && (it->copy = cs_heap_backend_clone(op->be)) == NULL)
      rc = cs_backend_snapshot(op->be, 0, 65535, &it->bytes);
    if (rc) {
      cs_buf_free(&it->bytes);
      cs_free(it->path);
      it->path = NULL;
      snprintf(err, errlen, "snapshot of '%s' failed: %s", op->node->id,
               cs_strerror(rc));
      return -1;
    }
  }
  k->nitems++;
  return 0;
}

/* Snapshots the state of every operator of t for checkpoint id (calling
 * snapshot_state of rich functions first): the synchronous part here, the
 * files off the worker, and the acknowledgement when they are durable.
 * Returns 0, or -1 when a user function failed (the job fails). An I/O
 * failure fails only the checkpoint. */
int cs__tinst_snapshot(cs_tinst *t, int64_t id) {
  cs_worker *w = t->w;
  cs_job *job = w->job;
  char err[512];
  if (t->acked >= id) return 0;
  t->acked = id;
  /* one snapshot of a backend at a time: the previous one's files first */
  cs__tinst_snap_wait(t);
  uint64_t t0 = uv_hrtime();
  uv_mutex_lock(&job->lock);
  int is_pending = job->pending && job->pending->id == id;
  char *dir = is_pending && job->pending->dir ? cs_strdup(job->pending->dir) : NULL;
  int in_memory = is_pending && !job->pending->dir;
  int savepoint = is_pending && job->pending->savepoint;
  uv_mutex_unlock(&job->lock);
  if (!dir && !in_memory) return 0; /* not (or no longer) pending */
  cs_ckpt *parts = cs_ckpt_create();
  cs__snap_task *k = parts ? snap_task_new(t, id, parts, t->nops) : NULL;
  if (k == NULL) {
    cs_ckpt_destroy(parts);
    cs_free(dir);
    ckpt_part_failed(job, id, "out of memory");
    ack_parts(job, id, NULL, uv_hrtime() - t0, 0);
    return 0;
  }
  /* Lines printed before the barrier are out before the checkpoint can
   * complete: a restore from it never replays them, so a line still in the
   * buffer at a SIGKILL would be lost for good. */
  cs_worker_flush_stdio(w);
  for (int i = 0; i < t->nops; i++) {
    cs_opi *op = t->ops[i];
    if (!t->finished && cs__opi_snapshot_state(w->L, op)) {
      cs_free(dir);
      k->acked = 1;
      snap_task_free(k);
      return -1;
    }
    char *pos = i == 0 && t->is_source ? cs__src_position(t) : NULL;
    if (op->be == NULL && pos == NULL) continue;
    cs_buf snap = {0};
    char file[600];
    file[0] = '\0';
    if (op->be && dir) {
      if (op_sync_part(k, op, dir, savepoint, file, sizeof(file), err, sizeof(err))) {
        ckpt_part_failed(job, id, err);
        file[0] = '\0';
      }
    } else if (op->be) { /* in memory: the bytes go in the acknowledgement */
      int rc = cs_backend_snapshot(op->be, 0, 65535, &snap);
      if (rc) {
        snprintf(err, sizeof(err), "snapshot of '%s' failed: %s", op->node->id,
                 cs_strerror(rc));
        ckpt_part_failed(job, id, err);
      }
    }
    if (cs_ckpt_add_op(parts, op->node->id, op->node->parallelism) ||
        cs_ckpt_add_part(parts, op->node->id, op->subtask, file[0] ? file : NULL,
                         snap.len ? &snap : NULL, pos))
      ckpt_part_failed(job, id, "out of memory");
    cs_buf_free(&snap);
    cs_free(pos);
  }
  cs_free(dir);
  k->sync_ns = uv_hrtime() - t0;
  w->snaps_inflight++;
  if (k->nitems == 0 ||
      uv_queue_work(&w->loop, &k->req, snap_work, snap_after_work) != 0) {
    snap_work(&k->req); /* nothing to write, or no pool: here and now */
    snap_complete(k);
    snap_task_free(k);
    return 0;
  }
  t->snap = k;
  return 0;
}

/* Sends barrier id on every output of t, behind the records before it. */
void cs__tinst_emit_barrier(cs_tinst *t, int64_t id) {
  cs__send_control(t, CS_BATCH_BARRIER, id);
}

/* When every input of t delivered the barrier being aligned (or ended),
 * snapshots, forwards the barrier and releases the inputs. Returns -1 when
 * the job failed. */
int cs__tinst_check_aligned(cs_tinst *t) {
  if (t->align_id == 0) return 0;
  int n = 0;
  for (int i = 0; i < t->ninch; i++)
    if (t->inch[i].aligned || t->inch[i].ended) n++;
  if (n < t->ninch) return 0;
  int64_t id = t->align_id;
  t->align_id = 0;
  t->naligned = 0;
  for (int i = 0; i < t->ninch; i++) t->inch[i].aligned = 0;
  if (cs__tinst_snapshot(t, id)) return -1;
  cs__tinst_emit_barrier(t, id);
  return 0;
}

int cs__tinst_on_barrier(cs_tinst *t, struct cs_inch *in, int64_t id) {
  if (id <= t->acked) return 0;                  /* an abandoned checkpoint */
  if (t->align_id && id < t->align_id) return 0; /* abandoned, older */
  if (id > t->align_id) {                        /* a newer one overtakes */
    for (int j = 0; j < t->ninch; j++) t->inch[j].aligned = 0;
    t->align_id = id;
  }
  in->aligned = 1;
  return cs__tinst_check_aligned(t) ? -1 : 1;
}

/* Handles checkpoint triggers the coordinator posted: sources snapshot
 * their position and state and inject the barrier; subtasks that already
 * finished acknowledge with their final state. */
void cs__worker_handle_trigger(cs_worker *w) {
  cs_job *job = w->job;
  int64_t id = atomic_load(&job->trigger);
  if (id <= w->trigger_seen) return;
  w->trigger_seen = id;
  int stop = atomic_load(&job->stop_at_trigger);
  for (int i = 0; i < w->ntinst; i++) {
    cs_tinst *t = &w->tinst[i];
    if (t->acked >= id) continue;
    if (t->is_source && !t->finished) {
      if (cs__tinst_snapshot(t, id)) return;
      cs__tinst_emit_barrier(t, id);
      if (stop) cs__src_cancel(w->L, t);
    } else if (t->finished) {
      if (cs__tinst_snapshot(t, id)) return;
    }
  }
}

/* Delivers the newest completed checkpoint to the operators of the
 * worker's unfinished subtasks (notify_checkpoint_complete). */
void cs__worker_handle_completed(cs_worker *w) {
  int64_t id = atomic_load(&w->job->completed);
  if (id <= w->completed_seen) return;
  w->completed_seen = id;
  for (int i = 0; i < w->ntinst; i++) {
    cs_tinst *t = &w->tinst[i];
    if (t->finished) continue;
    for (int k = 0; k < t->nops; k++) {
      cs_opi *op = t->ops[k];
      const cs_op_type *type = op->node->type;
      if (atomic_load(&w->job->failed)) return;
      if (type->notify_checkpoint_complete &&
          type->notify_checkpoint_complete(w->L, op, id))
        return;
    }
  }
}
