/*
 * cs_metrics.c - the job's metric slots and its event histories.
 */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "host/metrics/cs_metrics.h"
#include "state/cs_common.h"

static int64_t wall_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

cs_metrics *cs_metrics_create(int nnodes, int ntasks, int maxpar) {
  cs_metrics *m = cs_calloc(1, sizeof(*m));
  if (m == NULL) return NULL;
  m->nnodes = nnodes;
  m->ntasks = ntasks;
  m->maxpar = maxpar > 0 ? maxpar : 1;
  m->opm = cs_calloc((size_t)(nnodes ? nnodes : 1) * (size_t)m->maxpar, sizeof(cs_opm));
  m->tm = cs_calloc((size_t)(ntasks ? ntasks : 1) * (size_t)m->maxpar, sizeof(cs_tm));
  if (m->opm == NULL || m->tm == NULL) {
    cs_metrics_destroy(m);
    return NULL;
  }
  m->started_ms = wall_ms();
  cs_metrics_reset_attempt(m);
  return m;
}

void cs_metrics_destroy(cs_metrics *m) {
  if (m == NULL) return;
  cs_free(m->opm);
  cs_free(m->tm);
  cs_free(m);
}

void cs_metrics_reset_attempt(cs_metrics *m) {
  size_t nop = (size_t)m->nnodes * (size_t)m->maxpar;
  for (size_t i = 0; i < nop; i++) {
    cs_opm *o = &m->opm[i];
    cs_metric_set(&o->in, 0);
    cs_metric_set(&o->out, 0);
    atomic_store_explicit(&o->wm, INT64_MIN, memory_order_relaxed);
    cs_metric_set(&o->state_entries, 0);
    cs_metric_set(&o->state_bytes, 0);
    cs_metric_set(&o->has_state, 0);
    cs_metric_set(&o->running, 0);
  }
  size_t nt = (size_t)m->ntasks * (size_t)m->maxpar;
  for (size_t i = 0; i < nt; i++) {
    cs_metric_set(&m->tm[i].busy_ns, 0);
    cs_metric_set(&m->tm[i].bp_ns, 0);
    cs_metric_set(&m->tm[i].bp_since, 0);
  }
  m->attempt_started_ms = wall_ms();
}

static void copy_text(char *dst, const char *src) {
  snprintf(dst, CS_METRICS_WHY, "%s", src ? src : "");
}

static cs_ckpt_event *next_ckpt(cs_metrics *m) {
  cs_ckpt_event *e = &m->ckpts[m->nckpts++ % CS_METRICS_HISTORY];
  memset(e, 0, sizeof(*e));
  e->at_ms = wall_ms();
  return e;
}

void cs_metrics_ckpt_done(cs_metrics *m, int64_t id, int savepoint,
                          uint64_t duration_ns, uint64_t sync_ns, uint64_t bytes) {
  if (m == NULL) return;
  cs_ckpt_event *e = next_ckpt(m);
  e->id = id;
  e->savepoint = savepoint;
  e->ok = 1;
  e->duration_ms = (double)duration_ns / 1e6;
  e->sync_ms = (double)sync_ns / 1e6;
  e->bytes = bytes;
  m->ckpt_completed++;
  m->last_ok = *e;
}

void cs_metrics_ckpt_failed(cs_metrics *m, int64_t id, const char *why) {
  if (m == NULL) return;
  cs_ckpt_event *e = next_ckpt(m);
  e->id = id;
  copy_text(e->why, why);
  m->ckpt_failed++;
}

void cs_metrics_reload(cs_metrics *m, int ok, const char *what) {
  if (m == NULL) return;
  cs_reload_event *e = &m->reloads_ev[m->nreloads_ev++ % CS_METRICS_HISTORY];
  e->at_ms = wall_ms();
  e->ok = ok;
  copy_text(e->what, what);
  if (ok)
    m->reloads++;
  else
    m->reloads_failed++;
}

uint64_t cs_metrics_bp_ns(cs_tm *t, uint64_t now_ns) {
  uint64_t since = cs_metric_get(&t->bp_since);
  uint64_t total = cs_metric_get(&t->bp_ns);
  return since && now_ns > since ? total + (now_ns - since) : total;
}
