/*
 * cs_scheduler.c - the cooperative scheduler inside a worker.
 *
 * A worker never blocks its thread on a full channel. A task whose outputs
 * are full is "blocked": it takes no new input until its overflow drains,
 * while the worker goes on with other tasks. Tasks are visited sinks first,
 * so downstream work always proceeds and the job cannot deadlock; the bound
 * on records in flight is the channel capacity plus the output of one input
 * batch. A round runs from the loop's idle handle while there is work, and
 * the loop sleeps (wake-ups: channels, sockets, timers) when there is none.
 */
#include <string.h>
#include <unistd.h>

#include "host/runtime/cs_runtime_int.h"

#define BATCHES_PER_VISIT 4

/* Ends a subtask: close() its operators, flush, and queue END downstream.
 * A source that reached the end of its input (not one stopped) first
 * brings event time to its end, so every event-time timer fires, as
 * Flink's bounded sources do; downstream tasks get that watermark before
 * END. */
void cs__tinst_finish(cs_tinst *t) {
  lua_State *L = t->w->L;
  /* A checkpoint this subtask has not acknowledged gets its final state. */
  if (t->acked < t->w->trigger_seen && cs__tinst_snapshot(t, t->w->trigger_seen))
    return;
  if (t->is_source && !t->cancelled &&
      cs__tinst_advance_watermark(t, -1, CS_MAX_WATERMARK))
    return;
  for (int i = 0; i < t->nops; i++) {
    if (atomic_load(&t->w->job->failed)) break;
    cs__opi_close(L, t->ops[i]);
    cs__opi_flush(t->ops[i]);
  }
  if (cs__send_control(t, CS_BATCH_END, 0)) return;
  t->finished = 1;
}

/* Processes one batch from an input channel. */
static int process_batch(cs_tinst *t, cs_batch *b, int input) {
  cs_worker *w = t->w;
  lua_State *L = w->L;
  size_t off = 0;
  int kg;
  cs_slice key, val;
  int rc;
  while ((rc = cs_batch_next(b, &off, &kg, &w->cur_ts, &key, &val)) == 1) {
    w->cur_kg = kg;
    w->cur_key = key;
    w->key_valid = t->ops[0]->node->keyed;
    rc = cs_opi_process_encoded(L, t->ops[0], input, val);
    w->key_valid = 0;
    if (rc) return -1;
    if (atomic_load_explicit(&w->abort, memory_order_relaxed)) return -1;
  }
  cs_metric_add(&t->ops[0]->m->in, b->count);
  if (rc < 0) {
    cs_job_fail(w->job, "internal error: a record batch is corrupt");
    return -1;
  }
  return 0;
}

/* Gives a non-source subtask a turn. Returns 1 on progress. */
static int tinst_visit_inputs(cs_tinst *t) {
  int progress = 0;
  for (int n = 0; n < t->ninch && !cs_tinst_blocked(t); n++) {
    struct cs_inch *in = &t->inch[(t->rr + n) % t->ninch];
    if (in->ended || in->aligned) continue;
    for (int k = 0; k < BATCHES_PER_VISIT && !cs_tinst_blocked(t); k++) {
      int wake = 0;
      cs_batch *b = cs_channel_pop(in->ch, &wake);
      if (b == NULL) break;
      if (wake) cs_worker_wake((cs_worker *)in->ch->producer);
      progress = 1;
      if (b->kind == CS_BATCH_END) {
        in->ended = 1;
        t->nended++;
        cs_batch_destroy(b);
        if (cs__tinst_check_aligned(t) || cs__tinst_input_watermark(t)) return 1;
        break;
      }
      if (b->kind == CS_BATCH_WATERMARK || b->kind == CS_BATCH_IDLE) {
        int idle = b->kind == CS_BATCH_IDLE;
        int64_t wm = b->ckpt;
        cs_batch_destroy(b);
        in->idle = idle;
        if (!idle && wm > in->wm) in->wm = wm;
        if (cs__tinst_input_watermark(t)) return 1;
        continue;
      }
      in->idle = 0;
      if (b->kind == CS_BATCH_BARRIER) {
        int64_t id = b->ckpt;
        cs_batch_destroy(b);
        int rc = cs__tinst_on_barrier(t, in, id);
        if (rc < 0) return 1;
        if (rc == 0) continue; /* a barrier of an abandoned checkpoint */
        break;
      }
      int rc = process_batch(t, b, in->input);
      cs_batch_destroy(b);
      if (rc) return 1;
    }
  }
  t->rr = t->ninch ? (t->rr + 1) % t->ninch : 0;
  if (t->nended == t->ninch && !t->finished) {
    cs__tinst_finish(t);
    progress = 1;
  }
  return progress;
}

/* One scheduling round over every subtask of the worker. */
static int worker_round(cs_worker *w) {
  int progress = 0;
  lua_State *L = w->L;
  cs__worker_handle_completed(w);
  cs__worker_handle_trigger(w);
  if (atomic_load(&w->job->reload_gen) > w->reload_seen) cs__worker_reload(w);
  cs__worker_tick_watermarks(w);
  if (atomic_load(&w->stop) && !w->stop_seen) {
    w->stop_seen = 1;
    for (int i = 0; i < w->ntinst; i++)
      if (w->tinst[i].is_source && !w->tinst[i].src_done)
        cs__src_cancel(L, &w->tinst[i]);
  }
  if (uv_now(&w->loop) >= w->metrics_due) cs__worker_sample_metrics(w);
  uint64_t t0 = uv_hrtime();
  for (int i = 0; i < w->ntinst; i++) {
    cs_tinst *t = &w->tinst[i];
    if (atomic_load_explicit(&w->abort, memory_order_relaxed)) return 0;
    if (t->done) continue;
    int visit = 0;
    if (t->ovf) {
      int was_blocked = 1;
      for (int k = 0; k < t->neouts; k++) progress |= cs__eout_drain(t->eouts[k]);
      if (was_blocked && !t->ovf && t->is_source) cs__src_unblocked(t);
    }
    if (t->finished) {
      if (!t->ovf) {
        t->done = 1;
        w->ndone++;
        progress = 1;
      }
      continue;
    }
    if (t->ovf) continue;
    if (t->is_source) {
      if (!t->src_done) visit = cs__src_step(L, t);
      if (t->src_done && !atomic_load(&w->job->failed)) {
        cs__tinst_finish(t);
        visit = 1;
      }
    } else {
      visit = tinst_visit_inputs(t);
    }
    cs__flush_outputs(t, 0);
    uint64_t t1 = uv_hrtime();
    if (visit) cs_metric_add(&t->m->busy_ns, t1 - t0); /* time that did work */
    t0 = t1;
    progress |= visit;
  }
  /* Printed lines wait no longer than batches do, even while busy. */
  if ((w->out.len || w->err.len) && uv_hrtime() - w->stdio_born >= CS__FLUSH_TIMEOUT_NS)
    cs_worker_flush_stdio(w);
  return progress;
}

static void worker_stop_loop(cs_worker *w) {
  uv_idle_stop(&w->idle);
  uv_timer_stop(&w->flush_timer);
  uv_stop(&w->loop);
}

static void on_idle(uv_idle_t *h) {
  cs_worker *w = container_of(h, cs_worker, idle);
  if (atomic_load(&w->abort)) {
    worker_stop_loop(w);
    return;
  }
  int progress = worker_round(w);
  if (atomic_load(&w->abort)) {
    worker_stop_loop(w);
    return;
  }
  if (w->ndone == w->ntinst) {
    /* Everything here is done; the loop stays up (answering checkpoint
     * triggers with final state) until every worker is done. */
    cs_worker_flush_stdio(w);
    uv_idle_stop(&w->idle);
    /* a snapshot's files still being written: its completion kicks us */
    if (w->snaps_inflight) return;
    if (!w->idle_reported) {
      w->idle_reported = 1;
      atomic_fetch_add(&w->job->workers_idle, 1);
      uv_async_send(w->job->main_wake);
    }
    if (atomic_load(&w->job->all_done)) worker_stop_loop(w);
    return;
  }
  if (!progress) {
    /* Nothing to do: send partial batches now (latency), then sleep until
     * a channel, a socket or a timer wakes us. */
    for (int i = 0; i < w->ntinst; i++)
      if (!w->tinst[i].finished) cs__flush_outputs(&w->tinst[i], 1);
    cs_worker_flush_stdio(w);
    int runnable = 0;
    for (int i = 0; i < w->ntinst; i++) {
      cs_tinst *t = &w->tinst[i];
      if (t->done) continue;
      if (t->finished && !t->ovf) runnable = 1;
      for (int k = 0; k < t->ninch; k++)
        if (!t->inch[k].ended && !t->inch[k].aligned &&
            cs_channel_ready(t->inch[k].ch))
          runnable = 1;
    }
    if (!runnable) uv_idle_stop(&w->idle);
  }
}

void cs_worker_kick(cs_worker *w) { uv_idle_start(&w->idle, on_idle); }

void cs_worker_kick_from_pipe(cs_worker *w, int fd) {
  char buf[64];
  while (read(fd, buf, sizeof(buf)) > 0) {
  }
  cs_worker_kick(w);
}

void cs__worker_start_rounds(cs_worker *w) {
  uv_idle_start(&w->idle, on_idle);
  uv_timer_start(&w->flush_timer, cs__on_flush_timer, 2, 2);
}

void cs__on_worker_wake(uv_async_t *h) {
  cs_worker *w = container_of(h, cs_worker, wake);
  if (atomic_load(&w->abort) || atomic_load(&w->job->all_done)) {
    worker_stop_loop(w);
    return;
  }
  uv_idle_start(&w->idle, on_idle);
}

void cs__on_flush_timer(uv_timer_t *h) {
  cs_worker *w = container_of(h, cs_worker, flush_timer);
  uv_idle_start(&w->idle, on_idle);
}
