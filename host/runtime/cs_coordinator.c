/*
 * cs_coordinator.c - the checkpoint coordinator, on the main thread: it
 * triggers checkpoint n (sources then inject barrier n), collects every
 * subtask's acknowledgement with its state, writes _metadata when all have
 * acknowledged, keeps the newest complete checkpoints and counts failures
 * against execution.checkpointing.tolerable-failed-checkpoints.
 */
#include <string.h>

#include "host/runtime/cs_runtime_int.h"

/* Counts a failed checkpoint and reports it; fails the job when more
 * checkpoints failed in a row than it tolerates. */
static void ckpt_failed(cs_job *job, int64_t id, const char *why) {
  job->failed_ckpts++;
  cs_metrics_ckpt_failed(job->metrics, id, why);
  fprintf(stderr, "cstream-lua: checkpoint %lld failed: %s\n", (long long)id, why);
  if (job->failed_ckpts > job->cfg->tolerable_failures) {
    char msg[1400];
    snprintf(msg, sizeof(msg), "checkpoint %lld failed and the job tolerates "
             "%d failed checkpoint(s) in a row "
             "(execution.checkpointing.tolerable-failed-checkpoints): %s",
             (long long)id, job->cfg->tolerable_failures, why);
    cs_job_fail(job, msg);
  }
}

/* Drops the pending checkpoint (failed or abandoned); under no lock. */
void cs__ckpt_discard(cs_job *job, const char *why) {
  uv_mutex_lock(&job->lock);
  cs_ckpt *c = job->pending;
  job->pending = NULL;
  char *e = job->pending_error;
  job->pending_error = NULL;
  uv_mutex_unlock(&job->lock);
  if (c == NULL) {
    cs_free(e);
    return;
  }
  if (why) ckpt_failed(job, c->id, e ? e : why);
  if (c->dir) cs_ckpt_remove_dir(c->dir);
  cs_ckpt_destroy(c);
  cs_free(e);
}

/* After checkpoint c completed: keeps the newest num-retained complete
 * checkpoints of the job, this run's and earlier runs' alike (the one this
 * run was restored from goes only once newer ones are complete); a
 * savepoint is never removed. Then drops the shared files no remaining
 * checkpoint or savepoint references. */
static void ckpt_retain(cs_job *job, const cs_ckpt *c) {
  if (c->dir == NULL || job->ckpt_base == NULL) return;
  if (job->group) { /* see cs_group_run.c */
    if (cs__group_retain(job) && cs_job_uses_rocksdb(job)) cs_ckpt_gc_shared(job->ckpt_base);
    return;
  }
  int removed = cs_ckpt_retain(job->ckpt_base, c->id, job->cfg->num_retained);
  if (removed && cs_job_uses_rocksdb(job)) cs_ckpt_gc_shared(job->ckpt_base);
}

/* Completes the pending checkpoint once every subtask acknowledged it. */
void cs__ckpt_complete(cs_job *job) {
  uv_mutex_lock(&job->lock);
  cs_ckpt *c = job->pending;
  int done = c && job->pending_acks == job->expected_acks;
  int failed = job->pending_error != NULL;
  uv_mutex_unlock(&job->lock);
  if (!done) return;
  if (failed) {
    cs__ckpt_discard(job, "a subtask could not write its state");
    return;
  }
  char err[1024];
  size_t total = 0;
  for (int i = 0; i < c->nparts; i++) total += c->parts[i].bytes.len;
  if (c->dir == NULL && (long long)total > job->cfg->memory_max_state) {
    snprintf(err, sizeof(err), "the state size %zu bytes exceeds the memory "
             "backend's maximum of %lld bytes (state.backend.memory.max-state-size); "
             "use the filesystem or rocksdb backend for larger state",
             total, job->cfg->memory_max_state);
    uv_mutex_lock(&job->lock);
    job->pending_error = cs_strdup(err);
    uv_mutex_unlock(&job->lock);
    cs__ckpt_discard(job, err);
    return;
  }
  if (c->dir && cs_ckpt_write_metadata(c, err, sizeof(err))) {
    uv_mutex_lock(&job->lock);
    if (!job->pending_error) job->pending_error = cs_strdup(err);
    uv_mutex_unlock(&job->lock);
    cs__ckpt_discard(job, err);
    return;
  }
  uv_mutex_lock(&job->lock);
  job->pending = NULL;
  job->last_sync_max = job->pending_sync_max;
  job->last_async_max = job->pending_async_max;
  uv_mutex_unlock(&job->lock);
  job->last_duration = uv_hrtime() - job->pending_started;
  job->failed_ckpts = 0;
  long long bytes = c->dir ? cs_dir_size(c->dir) : (long long)total;
  cs_metrics_ckpt_done(job->metrics, c->id, c->savepoint, uv_hrtime() - job->pending_started,
                       job->pending_sync_max, bytes > 0 ? (uint64_t)bytes : 0);
  if (cs__verbose()) {
    long long size = (long long)total, shared = 0;
    if (c->dir) {
      size = cs_dir_size(c->dir);
      if (job->ckpt_base) {
        char sh[4200];
        snprintf(sh, sizeof(sh), "%s/shared", job->ckpt_base);
        shared = cs_dir_size(sh);
      }
    }
    fprintf(stderr, "cstream-lua: %s %lld completed in %.1f ms (longest subtask "
            "snapshot %.1f ms, sync pause %.2f ms, %lld bytes, shared dir "
            "%lld bytes)%s%s\n",
            c->savepoint ? "savepoint" : "checkpoint", (long long)c->id,
            (double)job->last_duration / 1e6,
            (double)(job->last_sync_max + job->last_async_max) / 1e6,
            (double)job->last_sync_max / 1e6, size, shared,
            c->dir ? ": " : "", c->dir ? c->dir : "");
  }
  if (c->savepoint)
    fprintf(stderr, "cstream-lua: savepoint written to %s\n", c->dir);
  else
    ckpt_retain(job, c);
  cs_ckpt_destroy(job->latest);
  job->latest = c;
  /* Operators hear of it in their workers' next round. */
  atomic_store(&job->completed, c->id);
  cs__job_wake_all(job);
}

/* Starts checkpoint (or savepoint) job->last_id + 1. */
void cs__ckpt_trigger(cs_job *job, int savepoint) {
  uv_mutex_lock(&job->lock);
  int busy = job->pending != NULL;
  uv_mutex_unlock(&job->lock);
  if (busy) {
    if ((long long)((uv_hrtime() - job->pending_started) / 1000000) <
        job->cfg->timeout_ms)
      return;
    cs__ckpt_discard(job, "it timed out (execution.checkpointing.timeout)");
  }
  if (atomic_load(&job->failed) || atomic_load(&job->all_done)) return;
  cs_ckpt *c = cs_ckpt_create();
  if (c == NULL) return;
  c->id = ++job->last_id;
  c->savepoint = savepoint;
  c->job = cs_strdup(job->name);
  c->backend = cs_strdup(job->cfg->backend);
  c->max_parallelism = job->plan->max_parallelism;
  int in_memory = strcmp(job->cfg->backend, "memory") == 0;
  if ((savepoint && (job->cfg->savepoint_dir || job->ckpt_base)) ||
      (!savepoint && !in_memory && job->ckpt_base)) {
    cs_buf dir = {0};
    if (savepoint && job->cfg->savepoint_dir)
      cs_buf_printf(&dir, "%s/savepoint-%lld", job->cfg->savepoint_dir, (long long)c->id);
    else
      cs_buf_printf(&dir, "%s/%s-%lld", job->ckpt_base,
                    savepoint ? "savepoint" : "chk", (long long)c->id);
    c->dir = dir.data;
    char err[600];
    if (c->dir == NULL || cs_mkdirs(c->dir, err, sizeof(err))) {
      ckpt_failed(job, c->id, c->dir ? err : "out of memory");
      cs_ckpt_destroy(c);
      return;
    }
  }
  int expected = 0;
  for (int i = 0; i < job->plan->ntasks; i++) expected += job->plan->tasks[i].parallelism;
  uv_mutex_lock(&job->lock);
  job->pending = c;
  job->pending_acks = 0;
  job->expected_acks = expected;
  job->pending_started = uv_hrtime();
  job->pending_sync_max = 0;
  job->pending_async_max = 0;
  uv_mutex_unlock(&job->lock);
  atomic_store(&job->trigger, c->id);
  cs__job_wake_all(job);
}
