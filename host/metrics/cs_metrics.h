/*
 * cs_metrics.h - host/metrics, what a running job counts about itself:
 * per operator subtask (records in and out, event time, state size), per
 * task subtask (time busy and backpressured) and per job (checkpoints,
 * restarts, reloads, with a short history of each).
 *
 * Who writes what: an operator or task slot is written by the one worker
 * thread that runs that subtask, and read by the main thread (the REST
 * endpoint, the progress line). Counters are atomics used with relaxed
 * order and a single writer, so an increment is a plain load, add and
 * store (cs_metric_add): no lock and no locked instruction on the record
 * path. The job's own counters and histories are written and read on the
 * main thread only.
 *
 * The slots belong to the job (created before its first attempt, reset by
 * the main thread before each attempt's workers start, freed after the
 * job), so a reader never sees a slot go away while workers run.
 */
#ifndef CS_METRICS_H
#define CS_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

/* One single-writer counter or gauge. */
typedef _Atomic uint64_t cs_metric;
typedef _Atomic int64_t cs_metric_i64;

/* Adds n to a counter only one thread writes. */
static inline void cs_metric_add(cs_metric *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                        memory_order_relaxed);
}
static inline void cs_metric_set(cs_metric *c, uint64_t v) {
  atomic_store_explicit(c, v, memory_order_relaxed);
}
static inline uint64_t cs_metric_get(cs_metric *c) {
  return atomic_load_explicit(c, memory_order_relaxed);
}

/* An operator subtask. */
typedef struct cs_opm {
  cs_metric in;            /* records that arrived (sources: none) */
  cs_metric out;           /* records emitted, side outputs included */
  cs_metric_i64 wm;        /* its newest watermark, INT64_MIN for none */
  cs_metric state_entries; /* keys (map states: key, user key pairs) */
  cs_metric state_bytes;   /* an estimate, as cheap as the backend allows */
  cs_metric has_state;     /* a backend exists */
  cs_metric running;       /* 1 from open to the end of the subtask */
} cs_opm;

/* A task subtask (a chain of operators on one worker). */
typedef struct cs_tm {
  cs_metric busy_ns; /* time spent processing input or producing (sources) */
  cs_metric bp_ns;   /* time blocked on full output channels, ended spells */
  cs_metric bp_since; /* uv_hrtime() when the current spell began, or 0 */
} cs_tm;

#define CS_METRICS_HISTORY 32
#define CS_METRICS_WHY 240

/* A checkpoint that completed or failed. */
typedef struct cs_ckpt_event {
  int64_t id;
  int savepoint;
  int ok;
  int64_t at_ms;       /* wall clock when it ended */
  double duration_ms;  /* trigger to complete */
  double sync_ms;      /* the longest subtask snapshot (the sync pause) */
  uint64_t bytes;      /* state written (files and inline parts) */
  char why[CS_METRICS_WHY]; /* failed: the reason */
} cs_ckpt_event;

/* A hot reload that was committed or rolled back. */
typedef struct cs_reload_event {
  int64_t at_ms;
  int ok;
  char what[CS_METRICS_WHY]; /* changed operators, or the error */
} cs_reload_event;

typedef struct cs_metrics {
  int nnodes, ntasks, maxpar;
  cs_opm *opm; /* [nnodes * maxpar], by node index * maxpar + subtask */
  cs_tm *tm;   /* [ntasks * maxpar], by task index * maxpar + subtask */
  int64_t started_ms;         /* the job's start (wall clock) */
  int64_t attempt_started_ms; /* this attempt's */
  /* main thread only */
  uint64_t ckpt_completed, ckpt_failed, restarts, reloads, reloads_failed;
  cs_ckpt_event last_ok; /* the newest completed checkpoint (id 0: none) */
  cs_ckpt_event ckpts[CS_METRICS_HISTORY]; /* ring, newest at nckpts-1 */
  uint64_t nckpts;
  cs_reload_event reloads_ev[CS_METRICS_HISTORY];
  uint64_t nreloads_ev;
} cs_metrics;

/* Creates the slots of a job with nnodes operators and ntasks tasks, no
 * subtask index at or above maxpar. Returns NULL when out of memory;
 * caller frees with cs_metrics_destroy (accepts NULL). */
cs_metrics *cs_metrics_create(int nnodes, int ntasks, int maxpar);
void cs_metrics_destroy(cs_metrics *m);

/* Zeroes the subtask slots for a new attempt (main thread, before the
 * workers start). */
void cs_metrics_reset_attempt(cs_metrics *m);

static inline cs_opm *cs_metrics_opm(cs_metrics *m, int node, int subtask) {
  return &m->opm[(size_t)node * (size_t)m->maxpar + (size_t)subtask];
}
static inline cs_tm *cs_metrics_tm(cs_metrics *m, int task, int subtask) {
  return &m->tm[(size_t)task * (size_t)m->maxpar + (size_t)subtask];
}

/* The job's events (main thread): a checkpoint completed, one failed, a
 * reload committed or rolled back. Strings are copied (truncated). */
void cs_metrics_ckpt_done(cs_metrics *m, int64_t id, int savepoint,
                          uint64_t duration_ns, uint64_t sync_ns, uint64_t bytes);
void cs_metrics_ckpt_failed(cs_metrics *m, int64_t id, const char *why);
void cs_metrics_reload(cs_metrics *m, int ok, const char *what);

/* Time busy and backpressured of a task subtask until now_ns (uv_hrtime),
 * the spell of backpressure in progress included. */
uint64_t cs_metrics_bp_ns(cs_tm *t, uint64_t now_ns);

#endif /* CS_METRICS_H */
