/*
 * cs_runtime.h - the engine's internal model, shared by the planner
 * (cs_plan.c), the job and its workers (cs_job.c), the operators
 * (cs_operator.c), the sources and sinks (cs_source.c, cs_sink.c) and the
 * Lua bindings (cs_core.c). Not a public interface.
 *
 * A job script builds a logical graph of nodes (lua/cstream.lua). The
 * planner turns it into tasks: a task is a chain of nodes joined by forward
 * edges of equal parallelism; tasks are joined by exchange edges whose
 * records travel as encoded batches through SPSC channels. Worker w runs
 * subtask w of every task whose parallelism exceeds w, in its own thread,
 * with its own Lua state and libuv loop.
 */
#ifndef CS_RUNTIME_H
#define CS_RUNTIME_H

#include <lua.h>
#include <stdatomic.h>
#include <stdio.h>
#include <uv.h>

#include "state/cs_backend.h"
#include "state/cs_common.h"
#include "host/runtime/cs_channel.h"
#include "host/checkpoint/cs_checkpoint.h"

/* ================================================================ plan */

typedef enum cs_op_kind {
  CS_OP_SRC_ELEMENTS,
  CS_OP_SRC_FILE,
  CS_OP_SRC_SOCKET,
  CS_OP_SRC_CUSTOM,
  CS_OP_MAP,
  CS_OP_FLAT_MAP,
  CS_OP_FILTER,
  CS_OP_PROCESS,
  CS_OP_REDUCE,
  CS_OP_CO_MAP,
  CS_OP_CO_FLAT_MAP,
  CS_OP_SINK_PRINT,
  CS_OP_SINK_FILE,
  CS_OP_SINK_CUSTOM
} cs_op_kind;

typedef enum cs_part {
  CS_PART_FORWARD,
  CS_PART_HASH,
  CS_PART_REBALANCE,
  CS_PART_BROADCAST
} cs_part;

/* How a key (or a rolling aggregate's field) is taken from a record. */
typedef enum cs_sel_kind {
  CS_SEL_NONE,  /* the record itself */
  CS_SEL_POS,   /* record[pos] */
  CS_SEL_FIELD, /* record.field */
  CS_SEL_FN     /* a Lua function (keys only) */
} cs_sel_kind;

typedef struct cs_selector {
  cs_sel_kind kind;
  lua_Integer pos;
  char *field;
} cs_selector;

typedef enum cs_agg { CS_AGG_SUM, CS_AGG_MIN, CS_AGG_MAX, CS_AGG_REDUCE } cs_agg;

typedef struct cs_input {
  int from;        /* producer node index */
  cs_part part;    /* as the script asked */
  cs_selector key; /* for CS_PART_HASH */
  int edge;        /* exchange edge index, or -1 when chained */
} cs_input;

typedef struct cs_node {
  int index;
  cs_op_kind kind;
  char *name;
  char *id; /* uid, or derived from kind and position */
  int parallelism;
  int keyed;
  int ninputs;
  cs_input in[2];
  int task;
  int chained; /* runs in its producer's task */
  /* parameters */
  char *path;    /* file source, file sink */
  char *host;    /* socket source */
  int port;
  char delim;
  char *prefix;  /* print sink identifier */
  int to_stderr; /* print sink */
  cs_agg agg;
  cs_selector field; /* rolling aggregate field */
} cs_node;

typedef struct cs_edge {
  int from, to, input;
  cs_part part; /* effective: forward means subtask i -> subtask i */
  int nprod, ncons;
  cs_channel **ch; /* [prod * ncons + cons], NULL where unused */
} cs_edge;

typedef struct cs_task {
  int root;
  int parallelism;
  int nnodes;
  int *nodes; /* root first, then chained nodes in graph order */
} cs_task;

typedef struct cs_plan {
  int nnodes;
  cs_node *nodes;
  int nedges;
  cs_edge *edges;
  int ntasks;
  cs_task *tasks;
  int nworkers;
  int max_parallelism;
  size_t channel_capacity;
} cs_plan;

/* Builds a plan from the environment table at env_idx of the planning
 * state. default_par is the parallelism for nodes that set none. Returns 0,
 * or CS_EPLAN with a message in err. Caller frees with cs_plan_destroy. */
int cs_plan_build(lua_State *L, int env_idx, int default_par, cs_plan **out,
                  char *err, size_t errlen);
/* Creates the channels of every edge. Returns 0 or CS_ENOMEM. */
int cs_plan_create_channels(cs_plan *p);
/* Frees the channels (and batches queued in them), for another run. */
void cs_plan_destroy_channels(cs_plan *p);
void cs_plan_destroy(cs_plan *p); /* accepts NULL; frees channels too */

/* ============================================================= runtime */

struct cs_worker;
struct cs_tinst;
struct cs_job;

/* The exchange output of one producer subtask on one edge. */
typedef struct cs_eout {
  cs_edge *edge;
  int subtask;
  struct cs_tinst *t;
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
  /* sinks */
  FILE *file;
  char *file_path;
  cs_buf fbuf;
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
  } *inch;
  int nended;
  int64_t align_id; /* checkpoint being aligned, 0 when none */
  int naligned;
  int64_t acked;    /* newest checkpoint this subtask acknowledged */
  int rr;
  int neouts;
  cs_eout **eouts;
  int ovf;      /* (eout, consumer) pairs with an overflow */
  int finished; /* close() called, END queued */
  int done;     /* finished and every output delivered */
  /* sources */
  int is_source;
  int src_done;
  struct cs_source *src;
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
  cs_buf scratch;
  cs_buf out; /* stdout lines */
  cs_buf err; /* stderr lines */
  uint64_t stdio_born; /* uv_hrtime() of the oldest buffered line */
  /* current keyed context */
  int cur_kg;
  cs_slice cur_key;
  int key_valid; /* a keyed record is being processed */
  cs_opi *cur_op;
  int64_t trigger_seen; /* newest checkpoint trigger handled */
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
} cs_run_config;

typedef struct cs_job {
  cs_plan *plan;
  const cs_run_config *cfg;
  char *ckpt_base;   /* <checkpoint_dir>/<job name>, or NULL */
  char *workdir;     /* local working directory (RocksDB), or NULL */
  cs_ckpt *restore;  /* the checkpoint this attempt starts from, or NULL */
  atomic_llong trigger;   /* newest checkpoint id sources must inject */
  atomic_int stop_at_trigger; /* sources finish right after that barrier */
  cs_ckpt *pending;  /* checkpoint being acknowledged (under lock) */
  int pending_acks;
  int expected_acks;
  char *pending_error; /* a subtask failed to snapshot (under lock) */
  uint64_t pending_started; /* uv_hrtime() */
  uint64_t pending_sync_max; /* longest subtask snapshot, ns (under lock) */
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
  struct cs_reload *reload; /* main-thread watcher, or NULL */
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
} cs_job;

/* ------------------------------------------------------------ cs_job.c */

/* Runs the planned job to its end, restarting it from its latest checkpoint
 * after a failure as cfg's restart strategy allows. Returns 0, or CS_ELUA/...
 * with the error in *errmsg (caller frees with cs_free). */
int cs_job_run(cs_plan *plan, const cs_run_config *cfg, const char *name,
               const char *script, int argc, char **argv,
               const char *fingerprint, char **errmsg);

/* The operator subtask's state backend, created on first use. Returns
 * NULL when it cannot be created (the job has failed then). */
cs_backend *cs_opi_backend(cs_opi *op);

/* Whether the job keeps its working state in RocksDB, and the RocksDB
 * options its configuration asks for. */
struct cs_rocksdb_options;
int cs_job_uses_rocksdb(const cs_job *job);
void cs_job_rocksdb_options(const cs_job *job, struct cs_rocksdb_options *o);
/* The local RocksDB working directory of an operator subtask. */
void cs_opi_workdir(const cs_opi *op, char *buf, size_t len);

/* Records the job's failure (the first one wins) and stops every worker. */
void cs_job_fail(cs_job *job, const char *msg);

/* Emits the value on top of L through op's outputs; pops it.  [-1, +0]
 * Returns 0, or -1 when the job is failing (the error is recorded). */
int cs_emit(lua_State *L, cs_opi *op);

/* Emits the encoded value v through op's outputs without decoding it
 * where the consumers allow (see cs_opi_process_encoded). v must stay valid
 * meanwhile. Returns 0 or -1. */
int cs_emit_encoded(lua_State *L, cs_opi *op, cs_slice v);

/* Whether a source should pause: its task's outputs are full. */
int cs_tinst_blocked(const cs_tinst *t);

/* Wakes the worker's loop (any thread). */
void cs_worker_wake(cs_worker *w);
/* Schedules a scheduling round (the worker's own thread only). */
void cs_worker_kick(cs_worker *w);

/* ------------------------------------------------------- cs_operator.c */

/* Binds the node's Lua function(s) from the worker's environment table
 * and creates the opi's Context and Collector. Returns 0 or -1 (job failed).
 */
int cs_opi_bind(lua_State *L, cs_opi *op, int env_idx);
/* Calls open()/close() of a rich function. Returns 0 or -1. */
int cs_opi_open(lua_State *L, cs_opi *op);
int cs_opi_close(lua_State *L, cs_opi *op);
/* Calls snapshot_state(self, ctx) of a rich function that has it (before
 * its operator state is copied into a checkpoint). Returns 0 or -1. */
int cs_opi_snapshot_state(lua_State *L, cs_opi *op);
void cs_opi_release(lua_State *L, cs_opi *op);

/* Processes the value on top of L arriving at op's input; pops it.
 * Returns 0 or -1 (job failed). */
int cs_opi_process(lua_State *L, cs_opi *op, int input);

/* Processes the encoded record rec arriving at op's input: in C for the
 * built-in operators that allow it (rolling sum/min/max, print and text
 * sinks), else decoded and handed to cs_opi_process. Returns 0 or -1. */
int cs_opi_process_encoded(lua_State *L, cs_opi *op, int input, cs_slice rec);

/* Reports a failure of op while handling the record at rec_idx (0 = none),
 * with message msg; always returns -1. */
int cs_opi_fail(lua_State *L, cs_opi *op, int rec_idx, const char *msg);

/* Registers the Context and Collector metatables in L. */
void cs_operator_open_types(lua_State *L);

/* The worker whose Lua state is L (set for worker states), or NULL. */
cs_worker *cs_worker_of(lua_State *L);

/* -------------------------------------------------------- cs_reload.c */

/* Main thread: starts watching the script and its local modules (and
 * SIGHUP) on loop. Returns 0 or an error (message printed). */
int cs_reload_start(cs_job *job, uv_loop_t *loop);
/* cs_job.c: stops the job, after a final checkpoint (or a savepoint) when
 * the configuration allows. Returns whether one was triggered. */
int cs__job_stop(cs_job *job, int savepoint);

/* Main thread: stops watching; the handles close on loop. */
void cs_reload_stop(cs_job *job);
/* The directory of the savepoints a topology change takes when the job
 * has no checkpoint or savepoint directory: /tmp/cstream-reload-<pid>. */
void cs_reload_savepoint_base(char *buf, size_t len);
/* Removes that directory (the program is ending, not restarting). */
void cs_reload_remove_savepoints(void);
/* Main thread: the workers' prepare reports arrived (called on wake). */
void cs_reload_on_wake(cs_job *job);
/* Worker: handles a posted reload (prepare, wait, commit or abort). */
void cs_worker_reload(cs_worker *w);

/* cs_job.c: loads the job script into L for worker w, up to env:execute()
 * (which stores w->env_ref). Returns 0 or -1 with the error recorded (job
 * failure, or w->reload_error while reloading). */
int cs__worker_load(cs_worker *w, lua_State *L);
/* cs_job.c: looks up the key selector functions of w's exchange outputs in
 * w->L (after a reload). */
void cs__worker_bind_keys(cs_worker *w);

/* ------------------------------------------------------- cs_restore.c */

/* Loads op's keyed and operator state from checkpoint ck, redistributing
 * it when the operator's parallelism changed; sets op->restored when the
 * checkpoint has the operator. Returns 0 or -1 (job failed). */
int cs_restore_opi(cs_opi *op, const cs_ckpt *ck);

/* -------------------------------------------------------- cs_source.c */

/* Prepares the task's source (files opened, sockets connected). Returns 0
 * or -1 (job failed). */
int cs_source_start(lua_State *L, cs_tinst *t);
/* Produces some records; returns 1 if it made progress. Sets t->src_done
 * when the source is exhausted. */
int cs_source_step(lua_State *L, cs_tinst *t);
/* Called when the task is no longer blocked (resumes socket reads). */
void cs_source_unblocked(cs_tinst *t);
/* The source's position for a checkpoint, as text (see cs_checkpoint.h);
 * caller frees with cs_free. NULL when out of memory. */
char *cs_source_position(cs_tinst *t);
/* Rebinds the source's Lua references to L after a reload (a Lua source's
 * run() starts again). */
void cs_source_rebind(lua_State *L, cs_tinst *t);
/* Cancels the source (stop requested). */
void cs_source_cancel(lua_State *L, cs_tinst *t);
void cs_source_destroy(lua_State *L, cs_tinst *t);
/* cstream.sleep: yields inside a custom source, blocks elsewhere. */
int cs_source_sleep(lua_State *L);
/* ctx:collect inside a custom source. */
int cs_source_collect(lua_State *L, cs_opi *op);

/* ---------------------------------------------------------- cs_sink.c */

int cs_sink_open(cs_opi *op);
/* Writes the value on top of L; pops it. Returns 0 or -1. */
int cs_sink_write(lua_State *L, cs_opi *op);
/* Writes the encoded record v; returns 0, -1 (failed), or 1 when it needs
 * the Lua path (it holds a map). */
int cs_sink_write_encoded(cs_opi *op, cs_slice v);
int cs_sink_flush(cs_opi *op);
void cs_sink_close(cs_opi *op);
/* Flushes the worker's buffered stdout/stderr lines. */
void cs_worker_flush_stdio(cs_worker *w);

#endif /* CS_RUNTIME_H */
