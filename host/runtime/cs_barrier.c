/*
 * cs_barrier.c - checkpoints inside a worker: a source snapshots its
 * position and state when the coordinator triggers a checkpoint and sends
 * the barrier downstream behind its records; a task with several input
 * channels aligns (holds each input that delivered the barrier until all
 * have), snapshots every operator's backend, forwards the barrier and
 * acknowledges to the coordinator.
 */
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

/* Snapshots the state of every operator of t for checkpoint id (calling
 * snapshot_state of rich functions first) and acknowledges it. Returns 0,
 * or -1 when a user function failed (the job fails). An I/O failure fails
 * only the checkpoint. */
int cs__tinst_snapshot(cs_tinst *t, int64_t id) {
  cs_worker *w = t->w;
  cs_job *job = w->job;
  char err[512];
  if (t->acked >= id) return 0;
  t->acked = id;
  uint64_t t0 = uv_hrtime();
  cs_ckpt *parts = cs_ckpt_create();
  if (parts == NULL) {
    ckpt_part_failed(job, id, "out of memory");
    goto ack;
  }
  uv_mutex_lock(&job->lock);
  char *dir = job->pending && job->pending->id == id && job->pending->dir
                  ? cs_strdup(job->pending->dir) : NULL;
  int in_memory = job->pending && job->pending->id == id && !job->pending->dir;
  int savepoint = job->pending && job->pending->id == id && job->pending->savepoint;
  uv_mutex_unlock(&job->lock);
  if (!dir && !in_memory) { /* not (or no longer) pending */
    cs_ckpt_destroy(parts);
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
      cs_ckpt_destroy(parts);
      return -1;
    }
    char *pos = i == 0 && t->is_source ? cs__src_position(t) : NULL;
    if (op->be == NULL && pos == NULL) continue;
    cs_buf snap = {0};
    char file[600];
    file[0] = '\0';
    int has_sum = 0;
    uint64_t size = 0, hash = 0;
    if (op->be && cs_job_uses_rocksdb(job) && dir) {
      snprintf(file, sizeof(file), "%s-%d.rocksdb", op->node->id, op->subtask);
      for (char *c = file; *c; c++)
        if (*c == '/' || *c == ' ') *c = '_';
      char path[4800], shared[4800];
      snprintf(path, sizeof(path), "%s/%s", dir, file);
      int incremental = job->cfg->incremental && !savepoint && job->ckpt_base;
      if (incremental) snprintf(shared, sizeof(shared), "%s/shared", job->ckpt_base);
      if (incremental && cs_mkdirs(shared, err, sizeof(err))) {
        ckpt_part_failed(job, id, err);
      } else if (cs_rocksdb_checkpoint(op->be, path, incremental ? shared : NULL,
                                       &snap, err, sizeof(err))) {
        ckpt_part_failed(job, id, err);
      } else {
        /* _metadata records the manifest; the manifest, every file */
        has_sum = 1;
        size = snap.len;
        hash = XXH3_64bits(snap.data, snap.len);
      }
      cs_buf_free(&snap);
    } else if (op->be) {
      int rc = cs_backend_snapshot(op->be, 0, 65535, &snap);
      if (rc) {
        snprintf(err, sizeof(err), "snapshot of '%s' failed: %s", op->node->id,
                 cs_strerror(rc));
        ckpt_part_failed(job, id, err);
      } else if (dir) {
        snprintf(file, sizeof(file), "%s-%d.state", op->node->id, op->subtask);
        for (char *c = file; *c; c++)
          if (*c == '/' || *c == ' ') *c = '_';
        char path[4800];
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        has_sum = 1;
        size = snap.len;
        hash = XXH3_64bits(snap.data, snap.len);
        if (cs_write_file_durable(path, snap.data, snap.len, err, sizeof(err)))
          ckpt_part_failed(job, id, err);
        cs_buf_free(&snap);
      }
    }
    if (cs_ckpt_add_op(parts, op->node->id, op->node->parallelism) ||
        cs_ckpt_add_part(parts, op->node->id, op->subtask, file[0] ? file : NULL,
                         snap.len ? &snap : NULL, pos))
      ckpt_part_failed(job, id, "out of memory");
    else if (has_sum)
      cs_ckpt_set_sum(parts, size, hash);
    cs_buf_free(&snap);
    cs_free(pos);
  }
  cs_free(dir);
ack:
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
    uint64_t took = uv_hrtime() - t0;
    if (took > job->pending_sync_max) job->pending_sync_max = took;
    if (++job->pending_acks == job->expected_acks) uv_async_send(job->main_wake);
  }
  uv_mutex_unlock(&job->lock);
  cs_ckpt_destroy(parts);
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
