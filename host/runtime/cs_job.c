/*
 * cs_job.c - running a planned job: each attempt starts the worker threads
 * and runs the main thread's loop (signals, the checkpoint timer, wake-ups
 * from workers, the development mode's watcher) until every worker ends;
 * after a failure the job restarts from its latest complete checkpoint as
 * the restart strategy allows.
 */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <signal.h>
#include <sys/file.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/runtime/cs_runtime_int.h"

void cs_job_fail(cs_job *job, const char *msg) {
  uv_mutex_lock(&job->lock);
  if (job->error == NULL) job->error = cs_strdup(msg ? msg : "job failed");
  uv_mutex_unlock(&job->lock);
  if (atomic_exchange(&job->failed, 1) == 0) {
    uv_mutex_lock(&job->lock);
    uv_cond_broadcast(&job->reload_cond); /* nobody waits for a reload now */
    uv_mutex_unlock(&job->lock);
    for (int i = 0; i < job->nworkers; i++) {
      atomic_store(&job->workers[i].abort, 1);
      if (job->workers[i].running) cs_worker_wake(&job->workers[i]);
    }
    if (job->main_wake) uv_async_send(job->main_wake);
  }
}


typedef struct main_ctx {
  cs_job *job;
  uv_async_t wake;
  uv_signal_t sigint, sigterm;
  uv_timer_t ckpt_timer;
  uv_timer_t group_timer; /* a group: notices a new assignment */
  uint64_t group_deadline; /* uv_now() by which a rebalance's stop must end */
  int signals;
  int closing;
} main_ctx;

int cs__verbose(void) {
  const char *v = getenv("CSTREAM_VERBOSE");
  return v && *v && strcmp(v, "0") != 0;
}

void cs__job_wake_all(cs_job *job) {
  for (int i = 0; i < job->nworkers; i++) cs_worker_wake(&job->workers[i]);
}

static void close_cb(uv_handle_t *h) { (void)h; }

static void main_close(main_ctx *m) {
  if (m->closing) return;
  m->closing = 1;
  uv_close((uv_handle_t *)&m->wake, close_cb);
  uv_close((uv_handle_t *)&m->sigint, close_cb);
  uv_close((uv_handle_t *)&m->sigterm, close_cb);
  uv_close((uv_handle_t *)&m->ckpt_timer, close_cb);
  uv_close((uv_handle_t *)&m->group_timer, close_cb);
  if (m->job->hooks->reload_stop) m->job->hooks->reload_stop(m->job);
  if (m->job->observer && m->job->hooks->observe_stop) m->job->hooks->observe_stop(m->job);
}

static void on_main_wake(uv_async_t *h) {
  main_ctx *m = container_of(h, main_ctx, wake);
  cs_job *job = m->job;
  cs__ckpt_complete(job);
  if (job->reload && job->hooks->reload_on_wake) job->hooks->reload_on_wake(job);
  if (atomic_load(&job->workers_idle) == job->nworkers &&
      !atomic_exchange(&job->all_done, 1)) {
    uv_timer_stop(&m->ckpt_timer);
    cs__job_wake_all(job);
  }
  if (atomic_load(&job->workers_done) == job->nworkers) main_close(m);
}

static void on_group_timer(uv_timer_t *h) {
  main_ctx *m = h->data;
  cs_job *job = m->job;
  uint64_t now = uv_now(h->loop);
  if (atomic_load(&job->rebalanced)) {
    if (now > m->group_deadline)
      cs_job_fail(job, "the group's assignment changed and the final checkpoint of the "
                       "old share did not complete within cluster.session-timeout");
    return;
  }
  if (job->stopping || !cs__group_check(job)) return;
  fprintf(stderr, "cstream-lua: group '%s': the group's assignment changed; committing "
          "the old share with a final checkpoint\n", job->cfg->group);
  m->group_deadline = now + (uint64_t)job->cfg->group_session_ms;
  cs_job_stop(job, 0);
}

static void on_ckpt_timer(uv_timer_t *h) {
  main_ctx *m = h->data;
  if (!m->job->stopping) cs__ckpt_trigger(m->job, 0);
}

int cs_job_stop(cs_job *job, int savepoint) {
  const cs_run_config *cfg = job->cfg;
  int in_memory = strcmp(cfg->backend, "memory") == 0;
  int with_ckpt = savepoint ? (cfg->savepoint_dir != NULL || job->ckpt_base != NULL)
                            : cfg->interval_ms > 0 && !in_memory && job->ckpt_base;
  job->stopping = 1;
  if (with_ckpt) {
    /* Sources inject the final barrier and stop right after it. */
    uv_mutex_lock(&job->lock);
    int busy = job->pending != NULL;
    uv_mutex_unlock(&job->lock);
    if (busy) cs__ckpt_discard(job, NULL);
    atomic_store(&job->stop_at_trigger, 1);
    cs__ckpt_trigger(job, savepoint);
    job->stop_ckpt = 1;
    if (atomic_load(&job->trigger) == job->last_id) return 1;
  }
  for (int i = 0; i < job->nworkers; i++) {
    atomic_store(&job->workers[i].stop, 1);
    cs_worker_wake(&job->workers[i]);
  }
  return 0;
}

static void on_signal(uv_signal_t *h, int signum) {
  main_ctx *m = h->data;
  cs_job *job = m->job;
  job->user_stop = 1;
  if (++m->signals == 1) {
    const cs_run_config *cfg = job->cfg;
    int in_memory = strcmp(cfg->backend, "memory") == 0;
    int with_ckpt = cfg->savepoint_on_stop
                        ? (cfg->savepoint_dir != NULL || job->ckpt_base != NULL)
                        : cfg->interval_ms > 0 && !in_memory && job->ckpt_base;
    fprintf(stderr, "cstream-lua: %s received, stopping the job%s (again to "
                    "abort)\n", signum == SIGINT ? "SIGINT" : "SIGTERM",
            with_ckpt ? (cfg->savepoint_on_stop ? " with a savepoint"
                                                : " after a final checkpoint")
                      : "");
    cs_job_stop(job, cfg->savepoint_on_stop);
  } else {
    cs_job_fail(job, "job aborted by a second signal");
  }
}

/* One run of the job: workers started, the main loop run until they all
 * finish, everything torn down. Returns 0 or CS_ELUA with job->error set. */
static int run_attempt(cs_job *job) {
  main_ctx m;
  uv_loop_t loop;
  int started = 0;
  memset(&m, 0, sizeof(m));
  m.job = job;
  job->error = NULL;
  atomic_store(&job->failed, 0);
  atomic_store(&job->workers_done, 0);
  atomic_store(&job->workers_idle, 0);
  atomic_store(&job->all_done, 0);
  atomic_store(&job->stop_at_trigger, 0);
  atomic_store(&job->trigger, 0);
  atomic_store(&job->completed, 0);
  job->stopping = 0;
  job->stop_ckpt = 0;
  if (cs__channels_create(job->plan)) {
    job->error = cs_strdup("out of memory creating channels");
    return CS_ENOMEM;
  }
  job->workers = cs_calloc((size_t)job->nworkers, sizeof(cs_worker));
  if (job->workers == NULL) {
    job->error = cs_strdup("out of memory");
    return CS_ENOMEM;
  }
  uv_barrier_init(&job->ready, (unsigned)job->nworkers);
  uv_loop_init(&loop);
  uv_async_init(&loop, &m.wake, on_main_wake);
  job->main_wake = &m.wake;
  uv_signal_init(&loop, &m.sigint);
  uv_signal_init(&loop, &m.sigterm);
  m.sigint.data = m.sigterm.data = &m;
  uv_signal_start(&m.sigint, on_signal, SIGINT);
  uv_signal_start(&m.sigterm, on_signal, SIGTERM);
  uv_timer_init(&loop, &m.ckpt_timer);
  m.ckpt_timer.data = &m;
  if (job->cfg->interval_ms > 0)
    uv_timer_start(&m.ckpt_timer, on_ckpt_timer, (uint64_t)job->cfg->interval_ms,
                   (uint64_t)job->cfg->interval_ms);
  uv_timer_init(&loop, &m.group_timer);
  m.group_timer.data = &m;
  if (job->group) uv_timer_start(&m.group_timer, on_group_timer, 100, 100);
  if (job->cfg->watch && job->hooks->reload_start) job->hooks->reload_start(job, &loop);
  cs_metrics_reset_attempt(job->metrics);
  if (job->observer && job->hooks->observe_start) job->hooks->observe_start(job, &loop);

  for (int i = 0; i < job->nworkers; i++) {
    cs_worker *w = &job->workers[i];
    w->index = i;
    w->job = job;
    w->env_ref = LUA_NOREF;
    uv_loop_init(&w->loop);
    uv_async_init(&w->loop, &w->wake, cs__on_worker_wake);
    uv_idle_init(&w->loop, &w->idle);
    uv_timer_init(&w->loop, &w->flush_timer);
    uv_unref((uv_handle_t *)&w->flush_timer);
    w->running = 1;
  }
  for (int i = 0; i < job->nworkers; i++) {
    if (uv_thread_create(&job->workers[i].thread, cs__worker_main, &job->workers[i])) {
      /* cannot happen short of resource exhaustion; run no job */
      fprintf(stderr, "cstream-lua: cannot start worker threads\n");
      abort();
    }
    started++;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  for (int i = 0; i < started; i++) uv_thread_join(&job->workers[i].thread);
  for (int i = 0; i < job->nworkers; i++) {
    cs_worker *w = &job->workers[i];
    uv_close((uv_handle_t *)&w->wake, close_cb);
    uv_close((uv_handle_t *)&w->idle, close_cb);
    uv_close((uv_handle_t *)&w->flush_timer, close_cb);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
  }
  main_close(&m);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  job->main_wake = NULL;
  /* A checkpoint still open when the job ended never completes. */
  cs__ckpt_complete(job);
  cs__ckpt_discard(job, NULL);
  uv_barrier_destroy(&job->ready);
  cs_free(job->workers);
  job->workers = NULL;
  cs__channels_destroy(job->plan);
  return atomic_load(&job->failed) ? CS_ELUA : 0;
}

/* Makes this process the one owner of the job's checkpoint directory: an
 * exclusive flock() on <ckpt_base>/.lock, which holds the owner's pid. A
 * second process running the same job on the same directory would delete
 * and overwrite the first one's checkpoints; it is refused, naming the
 * owner. The lock goes with the process, however it ends. Returns 0, or
 * an error with its message in *errmsg. */
static int lock_checkpoints(cs_job *job, char **errmsg) {
  char err[600], path[4200];
  cs_buf m = {0};
  /* A directory that cannot be made holds no checkpoints to protect: each
   * checkpoint then fails, within the tolerated failures, saying why. */
  if (cs_mkdirs(job->ckpt_base, err, sizeof(err))) return 0;
  snprintf(path, sizeof(path), "%s/.lock", job->ckpt_base);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    cs_buf_printf(&m, "cannot open %s: %s", path, strerror(errno));
    *errmsg = m.data;
    return CS_EIO;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = "";
    ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
    pid[n > 0 ? n : 0] = '\0';
    pid[strcspn(pid, "\n")] = '\0';
    cs_buf_printf(&m, "job '%s' is already running with checkpoint directory %s "
                  "(process %s holds %s); stop it first, or give this run another "
                  "job name or checkpoint directory", job->name, job->ckpt_base,
                  pid[0] ? pid : "?", path);
    *errmsg = m.data;
    close(fd);
    return CS_EINVAL;
  }
  char pid[32];
  int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len) {
    /* the lock holds without the pid; only the message would lack it */
  }
  job->lock_fd = fd;
  return 0;
}

/* A group's requirements and bookkeeping: a shared checkpoint directory,
 * checkpointing, brokers, no --restore (each logical subtask restores from
 * the shared directory), and this process's member id. */
static int group_prepare(cs_job *job, char **errmsg) {
  const cs_run_config *cfg = job->cfg;
  const char *why = NULL;
  if (cfg->checkpoint_dir == NULL)
    why = "a checkpoint directory that every process of the group sees "
          "(--checkpoint-dir or state.checkpoints.dir)";
  else if (cfg->interval_ms <= 0)
    why = "checkpointing (--checkpoint-interval or execution.checkpointing.interval)";
  else if (strcmp(cfg->backend, "memory") == 0)
    why = "the filesystem or rocksdb state backend (--state-backend)";
  else if (cfg->kafka_bootstrap == NULL)
    why = "Kafka brokers (kafka.bootstrap-servers)";
  else if (cfg->restore)
    why = "no --restore: each logical subtask starts from the newest checkpoint of "
          "it in the shared checkpoint directory";
  for (const char *c = cfg->group; *c && !why; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
          *c == '.' || *c == '_' || *c == '-'))
      why = "a name of letters, digits, '.', '_' and '-' (it names Kafka topics and "
            "a directory)";
  if (why) {
    cs_buf b = {0};
    cs_buf_printf(&b, "--group %s needs %s", cfg->group, why);
    *errmsg = b.data;
    return CS_EINVAL;
  }
  char host[256];
  if (gethostname(host, sizeof(host)) != 0) snprintf(host, sizeof(host), "host");
  host[sizeof(host) - 1] = '\0';
  for (char *c = host; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
      *c = '_';
  cs_buf b = {0};
  cs_buf_printf(&b, "member-%s-%d-%lld", host, (int)getpid(), (long long)cs_now_ms());
  job->member = b.data;
  job->group_n = cfg->group_partitions;
  job->group_mine = cs_calloc((size_t)job->group_n, 1);
  job->attempt_mine = cs_calloc((size_t)job->group_n, 1);
  if (job->member == NULL || job->group_mine == NULL || job->attempt_mine == NULL) {
    *errmsg = cs_strdup("out of memory");
    return CS_ENOMEM;
  }
  return 0;
}

/* Checks the run configuration against the job and makes what a run needs
 * before its first attempt: the checkpoint base and the RocksDB working
 * directory; loads the checkpoint to restore. Returns 0, or an error with
 * its message in *errmsg (caller frees). */
static int job_prepare(cs_job *job, char **errmsg) {
  const cs_run_config *cfg = job->cfg;
  char err[4096];
  int rc;
  if (cfg->group && (rc = group_prepare(job, errmsg)) != 0) return rc;
  if (cfg->checkpoint_dir) {
    cs_buf b = {0};
    cs_buf_printf(&b, "%s/%s", cfg->checkpoint_dir, job->name);
    if (job->member) cs_buf_printf(&b, "/%s/%s", cfg->group, job->member);
    job->ckpt_base = b.data;
  }
  if (cfg->interval_ms > 0 && strcmp(cfg->backend, "memory") != 0 &&
      job->ckpt_base == NULL) {
    *errmsg = cs_strdup("checkpointing with the filesystem or rocksdb backend "
                        "needs a checkpoint directory (--checkpoint-dir, "
                        "state.checkpoints.dir, or the backend's URI)");
    return CS_EINVAL;
  }
  if (job->ckpt_base && (rc = lock_checkpoints(job, errmsg)) != 0) return rc;
  if (strcmp(cfg->backend, "rocksdb") == 0) {
    cs_ckpt_remove_stale_workdirs(cfg->rocksdb_localdir ? cfg->rocksdb_localdir : "/tmp");
    cs_buf b = {0};
    static atomic_int seq;
    cs_buf_printf(&b, "%s/cstream-%d-%d",
                  cfg->rocksdb_localdir ? cfg->rocksdb_localdir : "/tmp",
                  (int)getpid(), atomic_fetch_add(&seq, 1));
    job->workdir = b.data;
    if (job->workdir == NULL || cs_mkdirs(job->workdir, err, sizeof(err))) {
      cs_buf m = {0};
      cs_buf_printf(&m, "the RocksDB working directory "
                    "(state.backend.rocksdb.localdir) cannot be made: %s",
                    job->workdir ? err : "out of memory");
      *errmsg = m.data;
      return CS_EIO;
    }
  }
  if (cfg->savepoint_on_stop && !job->ckpt_base && !cfg->savepoint_dir) {
    *errmsg = cs_strdup("--savepoint-on-stop needs a directory for the savepoint "
                        "(state.savepoints.dir or --checkpoint-dir)");
    return CS_EINVAL;
  }
  if (!cfg->group && (rc = cs__restore_load(job, &job->latest, err, sizeof(err))) != 0) {
    *errmsg = cs_strdup(err);
    return rc;
  }
  if (job->ckpt_base) cs_ckpt_remove_incomplete(job->ckpt_base);
  /* New checkpoint ids never reuse a directory of an earlier run. */
  job->last_id = job->ckpt_base ? cs_ckpt_max_id(job->ckpt_base) : 0;
  if (job->latest) {
    if (job->latest->id > job->last_id) job->last_id = job->latest->id;
    fprintf(stderr, "cstream-lua: restoring job '%s' from %s %lld (%s)\n", job->name,
            job->latest->savepoint ? "savepoint" : "checkpoint",
            (long long)job->latest->id, job->latest->dir);
  }
  return 0;
}

int cs_job_run(cs_plan *plan, const cs_run_config *cfg, const cs_job_hooks *hooks,
               const char *name, const char *script, int argc, char **argv,
               const char *fingerprint, char **errmsg) {
  cs_job job;
  int rc = 0;
  memset(&job, 0, sizeof(job));
  *errmsg = NULL;
  job.plan = plan;
  job.cfg = cfg;
  job.hooks = hooks;
  job.name = name;
  job.script = script;
  job.argc = argc;
  job.argv = argv;
  job.fingerprint = fingerprint;
  job.nworkers = plan->nworkers;
  job.lock_fd = -1;
  uv_mutex_init(&job.lock);
  uv_mutex_init(&job.out_lock);
  uv_cond_init(&job.reload_cond);
  uv_cond_init(&job.group_cond);
  if ((rc = job_prepare(&job, errmsg)) != 0) goto done;
  if (cfg->group) {
    if (hooks->group_open == NULL) {
      *errmsg = cs_strdup("this build cannot run in a group");
      rc = CS_EINVAL;
      goto done;
    }
    if ((rc = hooks->group_open(&job, errmsg)) != 0) goto done;
  }
  job.metrics = cs_metrics_create(plan->nnodes, plan->ntasks, plan->nworkers);
  if (job.metrics == NULL) {
    *errmsg = cs_strdup("out of memory");
    rc = CS_ENOMEM;
    goto done;
  }
  if (hooks->observe_open && (rc = hooks->observe_open(&job, errmsg)) != 0) goto done;
  int attempts = 0;
  int max_attempts = cfg->restart_attempts;
  for (;;) {
    job.restore = job.latest;
    if (job.group) {
      job.restore = NULL;
      if ((rc = cs__group_begin_attempt(&job, &job.error)) != 0) {
        cs__group_end_attempt(&job);
        break;
      }
    }
    rc = run_attempt(&job);
    if (job.group) cs__group_end_attempt(&job);
    if (job.group && atomic_load(&job.rebalanced) && !job.user_stop) {
      fprintf(stderr, "cstream-lua: group '%s': restarting with the new share\n",
              cfg->group);
      cs_free(job.error);
      job.error = NULL;
      continue;
    }
    if (rc == 0 && job.restart_savepoint && job.latest && job.latest->savepoint &&
        cfg->restart_savepoint) {
      *cfg->restart_savepoint = cs_strdup(job.latest->dir);
      break;
    }
    if (rc == 0 || job.stopping) break;
    if (max_attempts < 0 || attempts >= max_attempts) break;
    attempts++;
    job.metrics->restarts++;
    fprintf(stderr, "cstream-lua: the job failed:\n%s\n", job.error ? job.error : "?");
    if (job.latest)
      fprintf(stderr, "cstream-lua: restarting (attempt %d of %d) in %lld ms from "
              "checkpoint %lld\n", attempts, max_attempts, cfg->restart_delay_ms,
              (long long)job.latest->id);
    else
      fprintf(stderr, "cstream-lua: restarting (attempt %d of %d) in %lld ms without "
              "state (no checkpoint completed yet)\n", attempts, max_attempts,
              cfg->restart_delay_ms);
    cs_free(job.error);
    job.error = NULL;
    uv_sleep((unsigned)cfg->restart_delay_ms);
  }
  if (rc) {
    if (max_attempts > 0 && attempts >= max_attempts && !job.stopping) {
      cs_buf b = {0};
      cs_buf_printf(&b, "%s\n(the job failed %d time(s) after %d restart(s); "
                    "restart-strategy.fixed-delay.attempts is %d)",
                    job.error ? job.error : "job failed", attempts + 1, attempts,
                    max_attempts);
      *errmsg = b.data;
    } else {
      *errmsg = job.error;
      job.error = NULL;
    }
  }
done:
  if (job.group && hooks->group_close) hooks->group_close(&job);
  if (job.observer && hooks->observe_close) hooks->observe_close(&job);
  cs_metrics_destroy(job.metrics);
  if (job.lock_fd >= 0) close(job.lock_fd);
  cs_free(job.error);
  cs_ckpt_destroy(job.latest);
  cs_free(job.ckpt_base);
  if (job.workdir) cs_ckpt_remove_dir(job.workdir);
  cs_free(job.workdir);
  cs_free(job.reload_error);
  cs_free(job.restart_savepoint);
  cs_free(job.member);
  cs_free(job.group_mine);
  cs_free(job.attempt_mine);
  uv_cond_destroy(&job.group_cond);
  uv_cond_destroy(&job.reload_cond);
  uv_mutex_destroy(&job.lock);
  uv_mutex_destroy(&job.out_lock);
  return rc;
}
