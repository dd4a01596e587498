/*
 * cs_runtime_int.h - internal to host/runtime: what its files share. Not
 * for other folders (their contract is cs_runtime.h).
 *
 *   cs_job.c          the job: attempts, restarts, the main thread's loop
 *   cs_worker.c       worker threads: load, build, run, tear down
 *   cs_scheduler.c    the cooperative scheduler inside a worker
 *   cs_exchange.c     emission: chained calls and exchange outputs
 *   cs_barrier.c      snapshots, barriers and their alignment in a worker
 *   cs_coordinator.c  triggering and completing checkpoints (main thread)
 *   cs_restore.c      choosing a checkpoint to restore, loading its state
 *   cs_swap.c         a worker's half of a hot reload (two-phase swap)
 *   cs_channel.c      batches and SPSC channels
 */
#ifndef CS_RUNTIME_INT_H
#define CS_RUNTIME_INT_H

#include "host/runtime/cs_runtime.h"

#define CS__FLUSH_TIMEOUT_NS (2 * 1000 * 1000) /* buffer timeout: 2 ms */

struct cs_rocksdb_options;

/* ------------------------------------------- calls through an op's type */

#define CS__CALL_OR(fn, dflt, ...) (type->fn ? type->fn(__VA_ARGS__) : (dflt))

static inline int cs__opi_bind(lua_State *L, cs_opi *op, int env_idx) {
  const cs_op_type *type = op->node->type;
  return CS__CALL_OR(bind, 0, L, op, env_idx);
}
static inline int cs__opi_open(lua_State *L, cs_opi *op) {
  const cs_op_type *type = op->node->type;
  return CS__CALL_OR(open, 0, L, op);
}
static inline int cs__opi_snapshot_state(lua_State *L, cs_opi *op) {
  const cs_op_type *type = op->node->type;
  return CS__CALL_OR(snapshot_state, 0, L, op);
}
static inline int cs__opi_close(lua_State *L, cs_opi *op) {
  const cs_op_type *type = op->node->type;
  return CS__CALL_OR(close, 0, L, op);
}
static inline int cs__opi_flush(cs_opi *op) {
  const cs_op_type *type = op->node->type;
  return CS__CALL_OR(flush, 0, op);
}
static inline void cs__opi_release(lua_State *L, cs_opi *op) {
  if (op->node->type->release) op->node->type->release(L, op);
}
static inline void cs__opi_destroy(cs_opi *op) {
  if (op->node->type->destroy) op->node->type->destroy(op);
}
static inline const cs_op_type *cs__src_type(const cs_tinst *t) {
  return t->ops[0]->node->type;
}
static inline int cs__src_start(lua_State *L, cs_tinst *t) {
  const cs_op_type *type = cs__src_type(t);
  return CS__CALL_OR(src_start, 0, L, t);
}
static inline int cs__src_step(lua_State *L, cs_tinst *t) {
  const cs_op_type *type = cs__src_type(t);
  return CS__CALL_OR(src_step, 0, L, t);
}
static inline char *cs__src_position(cs_tinst *t) {
  const cs_op_type *type = cs__src_type(t);
  return CS__CALL_OR(src_position, cs_strdup("none"), t);
}
static inline void cs__src_unblocked(cs_tinst *t) {
  if (cs__src_type(t)->src_unblocked) cs__src_type(t)->src_unblocked(t);
}
static inline void cs__src_rebind(lua_State *L, cs_tinst *t) {
  if (cs__src_type(t)->src_rebind) cs__src_type(t)->src_rebind(L, t);
}
static inline void cs__src_cancel(lua_State *L, cs_tinst *t) {
  t->src_done = 1;
  t->cancelled = 1;
  if (cs__src_type(t)->src_cancel) cs__src_type(t)->src_cancel(L, t);
}
static inline void cs__src_destroy(lua_State *L, cs_tinst *t) {
  if (cs__src_type(t)->src_destroy) cs__src_type(t)->src_destroy(L, t);
}

/* ------------------------------------------------------------ cs_job.c */

/* Whether CSTREAM_VERBOSE asks for progress lines on stderr. */
int cs__verbose(void);
/* Wakes every worker of the job. */
void cs__job_wake_all(cs_job *job);

/* ---------------------------------------------------------- cs_worker.c */

/* The worker thread's body: load, bind, open, run the loop, close. */
void cs__worker_main(void *arg);
/* Loads the job script into L for worker w, up to env:execute() (which
 * stores w->env_ref). Returns 0 or -1 with the error recorded (job
 * failure, or w->reload_error while reloading). */
int cs__worker_load(cs_worker *w, lua_State *L);
/* Looks up the key selector functions of w's exchange outputs in w->L. */
void cs__worker_bind_keys(cs_worker *w);
/* The RocksDB options the job's configuration asks for, and the local
 * working directory of an operator subtask. */
void cs__job_rocksdb_options(const cs_job *job, struct cs_rocksdb_options *o);
void cs__opi_workdir(const cs_opi *op, char *buf, size_t len);
/* Copies what the worker's operators hold (watermarks, state sizes) into
 * their metric slots; every 200 ms, from the scheduler. */
void cs__worker_sample_metrics(cs_worker *w);

/* ------------------------------------------------------- cs_scheduler.c */

/* Starts scheduling rounds on the worker's loop. */
void cs__worker_start_rounds(cs_worker *w);
/* libuv callbacks of the worker's wake-up and flush timer. */
void cs__on_worker_wake(uv_async_t *h);
void cs__on_flush_timer(uv_timer_t *h);
/* Ends a subtask: close() its operators, flush, and queue END downstream. */
void cs__tinst_finish(cs_tinst *t);

/* -------------------------------------------------------- cs_exchange.c */

/* Queues batch b towards consumer c of eo, behind any overflow. */
void cs__eout_send(cs_eout *eo, int c, cs_batch *b);
/* Sends eo's partial batch for consumer c. */
void cs__eout_flush(cs_eout *eo, int c);
/* Moves overflow into channels while they have room; 1 if any moved. */
int cs__eout_drain(cs_eout *eo);
/* Sends t's partial batches: all of them, or those past the timeout. */
void cs__flush_outputs(cs_tinst *t, int all);
/* Sends a control batch (WATERMARK or IDLE with value v) on eo's channels,
 * behind eo's records. Returns 0 or -1 (out of memory: the job fails). */
int cs__eout_control(cs_tinst *t, cs_eout *eo, cs_batch_kind kind, int64_t v);
/* Sends a control batch of the kind (END, or BARRIER with checkpoint id)
 * on every output channel of t, behind the records before it. Returns 0,
 * or -1 when out of memory (the job fails). */
int cs__send_control(cs_tinst *t, cs_batch_kind kind, int64_t id);
/* Creates the channels of every edge of p (for one run), and frees them
 * with the batches queued in them. */
int cs__channels_create(cs_plan *p);
void cs__channels_destroy(cs_plan *p);

/* --------------------------------------------------------- cs_barrier.c */

/* Snapshots every operator of t for checkpoint id and acknowledges it.
 * Returns 0, or -1 when a user function failed (the job fails); an I/O
 * failure fails only the checkpoint. */
int cs__tinst_snapshot(cs_tinst *t, int64_t id);
/* Waits for the asynchronous part of t's snapshot in flight, if any, and
 * acknowledges it: before the worker destroys t's backends. */
void cs__tinst_snap_wait(cs_tinst *t);
/* Sends barrier id on every output of t, behind the records before it. */
void cs__tinst_emit_barrier(cs_tinst *t, int64_t id);
/* Barrier id arrived on input `in` of t: aligns, and when every input
 * delivered it, snapshots and forwards it. Returns 1 (input held until the
 * alignment completes), 0 (the barrier of an abandoned checkpoint: go on
 * reading) or -1 (the job failed). */
int cs__tinst_on_barrier(cs_tinst *t, struct cs_inch *in, int64_t id);
/* Completes an alignment an ended input may have finished. */
int cs__tinst_check_aligned(cs_tinst *t);
/* Handles the checkpoint triggers the coordinator posted. */
void cs__worker_handle_trigger(cs_worker *w);
/* Delivers the newest completed checkpoint to the worker's operators. */
void cs__worker_handle_completed(cs_worker *w);

/* ----------------------------------------------------- cs_coordinator.c */

/* Starts checkpoint (or savepoint) job->last_id + 1. */
void cs__ckpt_trigger(cs_job *job, int savepoint);
/* Completes the pending checkpoint once every subtask acknowledged it. */
void cs__ckpt_complete(cs_job *job);
/* Drops the pending checkpoint (failed when why is set, else abandoned). */
void cs__ckpt_discard(cs_job *job, const char *why);

/* --------------------------------------------------------- cs_restore.c */

/* Loads the checkpoint --restore names into *out (NULL: none) and checks
 * that it can start this plan. Returns 0 or an error with a message. */
int cs__restore_load(cs_job *job, cs_ckpt **out, char *err, size_t errlen);
/* Checks that checkpoint ck can start this plan (max parallelism, no
 * operator's state dropped unless allowed). 0 or CS_EPLAN with a message. */
int cs__restore_check(const cs_job *job, const cs_ckpt *ck, char *err, size_t errlen);
/* A group: waits for an assignment, then takes it for the next attempt
 * and finds the checkpoint of each logical subtask it holds. 0, or an
 * error with a message (owned by the caller) in *errmsg. */
int cs__group_begin_attempt(cs_job *job, char **errmsg);
/* Main thread, during an attempt: 1 (once, job->rebalanced set) when the
 * group's assignment no longer is the one it started with. */
int cs__group_check(cs_job *job);
/* After a checkpoint of this member completed: removes its checkpoints
 * that are neither among the newest state.checkpoints.num-retained nor the
 * newest of it that holds some logical subtask (another member may need
 * that one to take the subtask over). Returns the number removed. */
int cs__group_retain(cs_job *job);
/* Frees what cs__group_begin_attempt loaded. */
void cs__group_end_attempt(cs_job *job);
/* Loads op's keyed and operator state from checkpoint ck, redistributing
 * it when the operator's parallelism changed; sets op->restored when the
 * checkpoint has the operator. Returns 0 or -1 (job failed). */
int cs__restore_opi(cs_opi *op, const cs_ckpt *ck);

/* ------------------------------------------------------- cs_watermark.c */

/* Event time reached wm: at the generator t->ops[from] and the operators
 * and exchanges downstream of it, or (from = -1) at every operator of t.
 * Does nothing unless wm is newer. Returns 0 or -1 (the job failed). */
int cs__tinst_advance_watermark(cs_tinst *t, int from, int64_t wm);
/* An input channel's watermark, idleness or end changed: advances t to the
 * minimum of its active inputs. Returns 0 or -1. */
int cs__tinst_input_watermark(cs_tinst *t);
/* Asks the worker's watermark generators for their watermarks, every
 * pipeline.auto-watermark-interval. */
void cs__worker_tick_watermarks(cs_worker *w);

/* ------------------------------------------------------------ cs_swap.c */

/* Handles a posted reload: prepare, wait for the decision, commit or roll
 * back. */
void cs__worker_reload(cs_worker *w);

#endif /* CS_RUNTIME_INT_H */
