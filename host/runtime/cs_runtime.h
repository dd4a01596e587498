/*
 * cs_runtime.h - the runtime: what host/runtime owns and what others may
 * call. The runtime runs a planned job: worker threads, each with its own
 * Lua state and libuv loop; the scheduler inside a worker; the exchanges
 * that carry encoded records between subtasks through channels; the
 * checkpoint coordinator, barriers and alignment; restarts and restores.
 *
 * Operators and connectors are not known here by name. Every node of the
 * plan carries a cs_op_type (a table of functions, like libuv's handle
 * types), and the runtime calls a node only through it. Operators and
 * connectors in turn reach the runtime only through the calls of the
 * section "for operators and connectors" below: emit a record, fail with a
 * message, find their backend, wake their worker.
 */
#ifndef CS_RUNTIME_H
#define CS_RUNTIME_H

#include <lua.h>
#include <stdatomic.h>
#include <stdio.h>
#include <uv.h>

#include "host/checkpoint/cs_checkpoint.h"
#include "host/metrics/cs_metrics.h"
#include "host/plan/cs_plan.h"
#include "host/runtime/cs_channel.h"
#include "state/cs_backend.h"
#include "state/cs_common.h"

struct cs_worker;
struct cs_tinst;
struct cs_job;
struct cs_opi;

/* ========================================================= operator types */

/* How the runtime drives one kind of node. Functions that do not apply are
 * NULL. Every int-returning function returns 0, or -1 when it failed (the
 * failure recorded with cs_opi_fail: the job fails, or a reload rolls back). */
typedef struct cs_op_type {
  const char *name;
  /* The method(s) a rich function (a table) must have: "map", or "map1"
   * and "map2" for a connected stream; NULL for built-ins. */
  const char *method[2];
  /* Finds the node's user functions in the worker's environment table at
   * env_idx and creates its Lua handles; also called with a new Lua state
   * on a reload (w->reloading set: no resources but Lua refs then). */
  int (*bind)(lua_State *L, struct cs_opi *op, int env_idx);
  int (*open)(lua_State *L, struct cs_opi *op);           /* initialize_state, open */
  int (*snapshot_state)(lua_State *L, struct cs_opi *op); /* before a snapshot */
  int (*close)(lua_State *L, struct cs_opi *op);          /* close() */
  void (*release)(lua_State *L, struct cs_opi *op);       /* drops Lua refs */
  /* The value on top of L arrives at input `input`; pops it. */
  int (*process)(lua_State *L, struct cs_opi *op, int input);
  /* The encoded record rec arrives: handled in C, or 1 when it needs the
   * Lua path (process with the record decoded). NULL: always the Lua path. */
  int (*process_encoded)(lua_State *L, struct cs_opi *op, int input, cs_slice rec);
  int (*flush)(struct cs_opi *op);   /* sinks: write out what is buffered */
  void (*destroy)(struct cs_opi *op); /* frees op->data; the job is ending */
  /* sources (the root of a task without inputs) */
  int (*src_start)(lua_State *L, struct cs_tinst *t); /* files opened, ... */
  /* Produces some records; returns 1 on progress, sets t->src_done at end. */
  int (*src_step)(lua_State *L, struct cs_tinst *t);
  void (*src_unblocked)(struct cs_tinst *t); /* outputs have room again */
  /* The position for a checkpoint as text (cs_checkpoint.h); caller frees
   * with cs_free; NULL when out of memory. NULL function: "none". */
  char *(*src_position)(struct cs_tinst *t);
  void (*src_rebind)(lua_State *L, struct cs_tinst *t); /* after a reload */
  void (*src_cancel)(lua_State *L, struct cs_tinst *t); /* stop requested */
  void (*src_destroy)(lua_State *L, struct cs_tinst *t); /* frees t->src */
  int (*src_collect)(lua_State *L, struct cs_opi *op);  /* ctx:collect(v) */
  /* event time */
  /* Event time reached wm at the operator (after its inputs'), before the
   * watermark goes on downstream: fire timers. 0 or -1. */
  int (*on_watermark)(lua_State *L, struct cs_opi *op, int64_t wm);
  /* A watermark generator: the watermark it would emit now (CS_NO_TS for
   * none yet); *idle set when it has been idle for its idle timeout. Asked
   * every pipeline.auto-watermark-interval. */
  int64_t (*gen_watermark)(struct cs_opi *op, uint64_t now_ms, int *idle);
  /* checkpoints */
  /* Checkpoint (or savepoint) id is complete: the coordinator has written
   * its _metadata, so every subtask's state of it is durable and a restore
   * will start from it or a newer one. Called on the operator's worker,
   * from a scheduling round after the completion, for each operator of a
   * subtask not finished yet. Completions can coalesce: when two complete
   * before the worker's next round, only the newer id is delivered (all up
   * to it are complete). Never called for a failed or abandoned checkpoint,
   * nor after the job failed. The place for the commit phase of a
   * two-phase-commit sink (kafka_sink) and for committing source offsets
   * back to an external system. 0 or -1. */
  int (*notify_checkpoint_complete)(lua_State *L, struct cs_opi *op, int64_t id);
} cs_op_type;

/* ================================================================ runtime */


struct cs_worker;
struct cs_tinst;
struct cs_job;

/* The exchange output of one producer subtask on one edge. */
typedef struct cs_eout {
  cs_edge *edge;
  int subtask;
  struct cs_tinst *t;
  struct cs_opi *op; /* the operator instance whose output this is */
  int key_ref; /* key selector function (registry), or LUA_NOREF */
  cs_batch **pending;  /* [ncons] batch being filled */
  cs_batch **ovf_head; /* [ncons] batches waiting for room */
  cs_batch **ovf_tail;
  int rr; /* rebalance position */
} cs_eout;

/* One output of an operator instance: a chained operator or an exchange. */
typedef struct cs_out {
  struct cs_opi *chained;
  int input;
  cs_eout *eout;
  const char *tag; /* a side output's tag (plan-owned), NULL for the main one */
} cs_out;

/* An operator instance: node x subtask, on one worker. */
typedef struct cs_opi {
  cs_node *node;
  struct cs_worker *w;
  struct cs_tinst *t;
  int subtask;
  int self_ref;  /* the rich table, or LUA_NOREF for a plain function */
  int fn_ref[2]; /* the method(s) to call */
  int ctx_ref;   /* Context userdata */
  int out_ref;   /* Collector userdata */
  int nout;
  cs_out *out;
  int state_id; /* rolling aggregate state */
  int restored; /* state came back from a checkpoint */
  struct cs_refs {
    int self, fn[2], ctx, out;
  } old; /* the previous code's refs while a reload is prepared */
  cs_backend *be; /* this operator subtask's state, created on first use */
  cs_buf rbuf;    /* an encoded result (rolling aggregates' fast path) */
  void *data; /* the operator type's own state (a sink's file), or NULL */
  int64_t wm;          /* the newest watermark the operator has seen */
  int wm_idle;         /* a generator that announced it is idle */
  struct cs_timers *timers; /* its timers, or NULL (cs_timers.c) */
  cs_opm *m;           /* its metrics (the job's slot) */
} cs_opi;

/* A subtask of a task, on the worker that runs it. */
typedef struct cs_tinst {
  cs_task *task;
  int subtask;
  struct cs_worker *w;
  int nops;
  cs_opi **ops; /* ops[0] is the root */
  int ninch;
  struct cs_inch {
    cs_channel *ch;
    int input;
    int ended;
    int aligned; /* delivered the barrier being aligned; held until all do */
    int idle;    /* the producer said it is idle: not in the minimum */
    int64_t wm;  /* the newest watermark it delivered */
  } *inch;
  int64_t wm; /* the task's watermark: the minimum over its inputs */
  int nended;
  int64_t align_id; /* checkpoint being aligned, 0 when none */
  int naligned;
  int64_t acked;    /* newest checkpoint this subtask acknowledged */
  /* its snapshot whose asynchronous part runs (cs_barrier.c), or NULL */
  struct cs__snap_task *snap;
  int rr;
  int neouts;
  cs_eout **eouts;
  int ovf;      /* (eout, consumer) pairs with an overflow */
  int finished; /* close() called, END queued */
  int cancelled; /* a source stopped before the end of its input */
  int done;     /* finished and every output delivered */
  /* sources */
  int is_source;
  int src_done;
  void *src; /* the source's own state, owned by its type */
  cs_tm *m;  /* its metrics (the job's slot) */
} cs_tinst;

typedef struct cs_worker {
  int index;
  struct cs_job *job;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t wake;
  uv_idle_t idle;
  uv_timer_t flush_timer;
  lua_State *L;
  int env_ref;
  cs_backend *be;
  int ntinst;
  cs_tinst *tinst; /* sinks first */
  int nopis;
  cs_opi *opis; /* by node index; node NULL when not on this worker */
  cs_buf keybuf;
  cs_buf valbuf;
  cs_buf tuplebuf; /* cs_emit_tuple's encoding */
  cs_buf scratch;
  cs_buf out; /* stdout lines */
  cs_buf err; /* stderr lines */
  uint64_t stdio_born; /* uv_hrtime() of the oldest buffered line */
  /* current keyed context */
  int cur_kg;
  cs_slice cur_key;
  int key_valid; /* a keyed record is being processed */
  int64_t cur_ts;  /* the current record's timestamp, or CS_NO_TS */
  /* where the record being emitted by a kafka_source came from, for a
   * group's repartition sink chained to it (cur_src_topic NULL: none) */
  const char *cur_src_topic;
  int32_t cur_src_part;
  int64_t cur_src_off;
  uint64_t wm_tick; /* uv_now() when the generators were last asked */
  int cur_domain;  /* in on_timer: CS_TIME_EVENT or CS_TIME_PROCESSING, else 0 */
  int64_t cur_timer; /* in on_timer: the timer's time */
  cs_opi *cur_op;
  int64_t trigger_seen; /* newest checkpoint trigger handled */
  int snaps_inflight;   /* snapshots whose asynchronous part runs */
  int64_t completed_seen; /* newest completed checkpoint notified */
  atomic_int abort;
  atomic_int stop;
  int stop_seen;
  int running;
  int ndone;
  int idle_reported; /* counted in job->workers_idle */
  int64_t reload_seen; /* newest reload handled */
  int reloading;       /* errors of user code are captured, not fatal */
  char *reload_error;  /* the first captured error */
  lua_State *old_L;    /* the previous code's state during a reload */
  /* An operator test harness (host/testing) runs one operator on a worker
   * of its own, without a thread: ctx:current_processing_time() reads its
   * clock (test_clock set), and side_output takes what the operator emits
   * to side outputs (the value on top of L, popped; 0 or -1). Unset in a
   * job. */
  int test_clock;
  int64_t test_now_ms;
  int (*side_output)(lua_State *L, struct cs_opi *op, const char *tag);
  uint64_t metrics_due; /* uv_now() of the next state-size sample */
} cs_worker;

/* How a job runs: state backend, checkpoints, restarts, restore. Filled
 * from flags, the job's own calls, the config file and defaults. */
typedef struct cs_run_config {
  const char *backend;        /* "memory", "filesystem" or "rocksdb" */
  const char *checkpoint_dir; /* base directory, or NULL */
  const char *savepoint_dir;  /* or NULL: <checkpoint_dir>/<job> */
  long long interval_ms;      /* 0: checkpointing off */
  long long timeout_ms;
  int tolerable_failures;
  int num_retained;
  int incremental;
  long long memory_max_state; /* bytes, memory backend */
  int restart_attempts;       /* -1: no restarts */
  long long restart_delay_ms;
  const char *restore;        /* checkpoint dir, "latest" or NULL */
  int allow_non_restored;
  int savepoint_on_stop;
  int watch;                  /* --watch: reload the script on change */
  const char *const *watch_files; /* the script and its local modules */
  int nwatch_files;
  char **digests;             /* per node: a digest of its code */
  int ndigests;
  char **restart_savepoint;   /* out: the topology changed; restart from */
  const char *rocksdb_localdir;
  long long rocksdb_block_cache;
  long long rocksdb_write_buffer;
  long long rocksdb_value_cache; /* 0: off */
  long long watermark_interval_ms; /* pipeline.auto-watermark-interval */
  long long max_line_length;  /* source.max-line-length, bytes */
  long long max_record_size;  /* pipeline.max-record-size, bytes, encoded */
  long long lua_memory_max;   /* taskmanager.memory.lua.max, bytes; 0: no cap */
  const char *kafka_bootstrap;      /* kafka.bootstrap-servers, or NULL */
  long long kafka_connect_timeout_ms; /* kafka.connect-timeout */
  long long kafka_txn_timeout_ms;     /* kafka.transaction-timeout */
  int rest_port;              /* rest.port: -1 off, 0 any free port */
  const char *rest_address;   /* rest.address */
  int progress;               /* -1 --quiet, 0 when stderr is a TTY, 1 --progress */
  const char *group;          /* cluster.group, or NULL: one process */
  int group_partitions;       /* cluster.partitions */
  long long group_session_ms; /* cluster.session-timeout */
} cs_run_config;

typedef struct cs_job {
  cs_plan *plan;
  const cs_run_config *cfg;
  char *ckpt_base;   /* <checkpoint_dir>/<job name>, or NULL */
  int lock_fd;       /* flock()ed <ckpt_base>/.lock while the job runs, or -1 */
  char *workdir;     /* local working directory (RocksDB), or NULL */
  cs_ckpt *restore;  /* the checkpoint this attempt starts from, or NULL */
  atomic_llong trigger;   /* newest checkpoint id sources must inject */
  atomic_int stop_at_trigger; /* sources finish right after that barrier */
  atomic_llong completed; /* newest completed checkpoint, for notifications */
  cs_ckpt *pending;  /* checkpoint being acknowledged (under lock) */
  int pending_acks;
  int expected_acks;
  char *pending_error; /* a subtask failed to snapshot (under lock) */
  uint64_t pending_started; /* uv_hrtime() */
  /* The pending checkpoint's longest synchronous pause of a subtask (the
   * worker stopped: state copied, barrier not yet forwarded) and longest
   * asynchronous part (files written off the worker, until the subtask
   * acknowledged), ns (under lock). */
  uint64_t pending_sync_max;
  uint64_t pending_async_max;
  /* The same figures of the newest completed checkpoint, with its duration
   * from trigger to completion, ns, for a metrics layer (main thread). */
  uint64_t last_sync_max;
  uint64_t last_async_max;
  uint64_t last_duration;
  int64_t last_id;   /* newest checkpoint id used */
  cs_ckpt *latest;   /* newest completed checkpoint (kept across restarts) */
  int failed_ckpts;  /* consecutive failed checkpoints */
  int stopping;      /* a stop was requested (signal) */
  int stop_ckpt;     /* the checkpoint that stops the job, 0 when none */
  /* hot reload (cs_reload.c) */
  atomic_llong reload_gen;  /* newest reload workers must prepare */
  uv_cond_t reload_cond;    /* workers wait here for the decision */
  int reload_prepared;      /* workers that prepared (under lock) */
  int reload_failed;
  char *reload_error;
  int64_t reload_decided;   /* the reload decided, with reload_commit */
  int reload_commit;
  char *restart_savepoint;  /* topology changed: set (non-NULL) to restart */
  void *reload;             /* main-thread watcher (hooks->reload), or NULL */
  const struct cs_job_hooks *hooks;
  atomic_int workers_idle; /* workers whose subtasks are all done */
  atomic_int all_done;     /* every worker is idle: stop the loops */
  const char *name;
  const char *script;
  int argc; /* arguments for the script's arg table */
  char **argv;
  const char *fingerprint;
  int nworkers;
  cs_worker *workers;
  uv_barrier_t ready;
  uv_mutex_t lock;
  uv_mutex_t out_lock;
  char *error; /* the first failure, owned */
  atomic_int failed;
  atomic_int workers_done;
  uv_async_t *main_wake;
  cs_metrics *metrics; /* the job's metrics (host/metrics), for its whole run */
  void *observer;      /* the REST endpoint and progress line (hooks), or NULL */
  /* a group (cluster.group; cs_group_run.c): the process runs the logical
   * subtasks its membership (hooks->group_open) was assigned */
  void *group;         /* the membership, or NULL */
  char *member;        /* this process's member id: its checkpoint directory */
  int group_n;         /* cluster.partitions */
  unsigned char *group_mine; /* [group_n]: the newest assignment (under lock) */
  int group_assigned;  /* an assignment holds (under lock) */
  int64_t group_gen;   /* bumped by every assignment and revocation (under lock) */
  uv_cond_t group_cond;
  int64_t attempt_gen; /* the assignment the running attempt started with */
  unsigned char *attempt_mine; /* its copy, read by the workers */
  atomic_int rebalanced; /* the attempt stops because the assignment changed */
  int user_stop;         /* a signal asked the job to stop (main thread) */
  int ngroup_ckpts;
  cs_ckpt **group_ckpts; /* checkpoints the attempt restores from */
  cs_ckpt **restore_sub; /* [group_n]: the one of each logical subtask, or NULL */
} cs_job;

/* What the runtime calls above itself, given by the layer that starts the
 * job (host/core): the cstream.core opener for worker states and the
 * development mode's watcher (NULL when not watching). */
typedef struct cs_job_hooks {
  lua_CFunction open_core;
  int (*reload_start)(struct cs_job *job, uv_loop_t *loop); /* main thread */
  void (*reload_stop)(struct cs_job *job);
  void (*reload_on_wake)(struct cs_job *job);
  /* Watching the job (host/rest), all on the main thread: observe_open
   * once before the first attempt (binds the endpoint: non-zero with
   * *errmsg, caller frees, and the job does not start), observe_start and
   * observe_stop around each attempt's loop, observe_close at the end. */
  int (*observe_open)(struct cs_job *job, char **errmsg);
  void (*observe_start)(struct cs_job *job, uv_loop_t *loop);
  void (*observe_stop)(struct cs_job *job);
  void (*observe_close)(struct cs_job *job);
  /* A group's membership (host/connectors/cs_group.c), main thread: joins
   * before the first attempt (non-zero with *errmsg: the job does not
   * start), leaves at the end. */
  int (*group_open)(struct cs_job *job, char **errmsg);
  void (*group_close)(struct cs_job *job);
} cs_job_hooks;

/* ================================================================ the job */

/* Runs the planned job to its end, restarting it from its latest checkpoint
 * after a failure as cfg's restart strategy allows. Every node of the plan
 * has its type. Returns 0, or CS_ELUA/... with the error in *errmsg (caller
 * frees with cs_free). */
int cs_job_run(cs_plan *plan, const cs_run_config *cfg, const cs_job_hooks *hooks,
               const char *name, const char *script, int argc, char **argv,
               const char *fingerprint, char **errmsg);

/* Called by env:execute() inside a worker: checks the plan's fingerprint,
 * keeps the environment at env_idx and unwinds the script (raises). */
int cs_job_worker_execute(lua_State *L, cs_worker *w, int env_idx,
                          const char *fingerprint);

/* Groups (cs_group_run.c). The membership reports what the group gave
 * this process: the logical subtasks it runs (mine[r] != 0, n entries),
 * or that they were taken away. Either stops a running attempt whose
 * assignment differs; the next attempt starts when an assignment holds. */
void cs_job_group_assigned(cs_job *job, const unsigned char *mine, int n);
void cs_job_group_revoked(cs_job *job);
/* Whether this process runs logical subtask r in this attempt (1 when not
 * in a group). */
int cs_job_runs_subtask(const cs_job *job, int r);
/* The checkpoint operator subtask `subtask` starts from in this attempt:
 * in a group, the newest that holds it; else job->restore. */
cs_ckpt *cs_job_restore_for(const cs_job *job, int subtask);

/* Records the job's failure (the first one wins) and stops every worker. */
void cs_job_fail(cs_job *job, const char *msg);

/* Stops the job, after a final checkpoint (or a savepoint) when the
 * configuration allows. Returns whether one was triggered. Main thread. */
int cs_job_stop(cs_job *job, int savepoint);

/* Whether the job keeps its working state in RocksDB. */
int cs_job_uses_rocksdb(const cs_job *job);

/* ============================================= for operators and connectors */

/* The worker whose Lua state is L (set for worker states), or NULL. */
cs_worker *cs_worker_of(lua_State *L);

/* Wakes the worker's loop (any thread). */
void cs_worker_wake(cs_worker *w);
/* Schedules a scheduling round (the worker's own thread only). */
void cs_worker_kick(cs_worker *w);
/* Empties the non-blocking wake-up pipe read end fd (a client library's
 * threads write a byte to it when they have something for the worker),
 * then schedules a round: the body of a uv_poll callback on that pipe. */
void cs_worker_kick_from_pipe(cs_worker *w, int fd);
/* Writes the worker's buffered stdout/stderr lines (w->out, w->err). */
void cs_worker_flush_stdio(cs_worker *w);

/* Emits the value on top of L through op's outputs; pops it.  [-1, +0]
 * Returns 0, or -1 when the job is failing (the error is recorded). */
int cs_emit(lua_State *L, cs_opi *op);
/* Emits the tuple { v1, ..., vn } of the n non-nil values at first ..
 * first + n - 1 through op's main outputs, as cs_emit would emit that
 * table: an exchange gets it encoded straight from the stack; a chained
 * operator gets the table, made only then.  [-0, +0]  Returns 0 or -1. */
int cs_emit_tuple(lua_State *L, cs_opi *op, int first, int n);
/* Emits the encoded value v through op's outputs without decoding it
 * where the consumers allow. v must stay valid meanwhile. Returns 0 or -1. */
int cs_emit_encoded(lua_State *L, cs_opi *op, cs_slice v);

/* Whether a source should pause: its task's outputs are full. */
int cs_tinst_blocked(const cs_tinst *t);

/* The operator subtask's state backend, created on first use. Returns
 * NULL when it cannot be created (the job has failed then). */
cs_backend *cs_opi_backend(cs_opi *op);

/* Reports a failure of op while handling the record at rec_idx (0 = none),
 * with message msg: the job fails, or while reloading the reload rolls
 * back. Always returns -1. */
int cs_opi_fail(lua_State *L, cs_opi *op, int rec_idx, const char *msg);

/* Hands the value on top of L (popped) or the encoded record rec to op
 * through its type, as a record arriving at input `input`. Returns 0 or -1. */
int cs_opi_process(lua_State *L, cs_opi *op, int input);
int cs_opi_process_encoded(lua_State *L, cs_opi *op, int input, cs_slice rec);

/* Emits the value on top of L to op's side output `tag` (the outputs made
 * by get_side_output(tag)); pops it. Returns 0 or -1. */
int cs_emit_to(lua_State *L, cs_opi *op, const char *tag);

/* ================================================================== time */

/* Time domains of timers (and of w->cur_domain inside on_timer). */
#define CS_TIME_EVENT 1
#define CS_TIME_PROCESSING 2

/* Wall-clock time in milliseconds since the epoch (processing time). */
int64_t cs_now_ms(void);

/* Calls a timer's user code: the worker's keyed context is the timer's
 * (w->cur_kg, w->cur_key, w->cur_ts = ts, w->cur_domain). 0 or -1. */
typedef int (*cs_timer_fn)(lua_State *L, cs_opi *op, int domain, int64_t ts);

/* Gives op its timers: kept per key in op's backend (a map state named
 * "<id>/_timers", so checkpoints and restores carry them by key group)
 * and mirrored in two queues by time; fire is called for each timer due.
 * The first call loads the timers a restore put in the backend; a later
 * one (a reload) only takes the new fire. Returns 0 or -1 (job failed). */
int cs_timers_open(cs_opi *op, cs_timer_fn fire);
/* Frees op's timers (the job is ending; the loop still runs). */
void cs_timers_destroy(cs_opi *op);

/* Registers (deduplicated) or deletes the timer at ts of the current key.
 * Returns 0, or a negative CS_E* code (CS_EINVAL outside a keyed
 * context, CS_ENOMEM). */
int cs_timer_register(cs_opi *op, int domain, int64_t ts);
int cs_timer_delete(cs_opi *op, int domain, int64_t ts);

/* Fires every timer of the domain due at `upto` (ts <= upto), in time
 * order, timers registered meanwhile included. Returns 0 or -1. */
int cs_timers_fire(lua_State *L, cs_opi *op, int domain, int64_t upto);

#endif /* CS_RUNTIME_H */
