/*
 * cs_watermark.c - event time in a worker: watermarks from generators
 * (assign_timestamps_and_watermarks), through the operators of a task and
 * across channels, as Flink's.
 *
 * A generator is asked for its watermark every auto-watermark-interval;
 * when it rose, the operators downstream of it in its task see it (their
 * event-time timers fire) and it goes out on their exchanges, behind the
 * records before it. A task with input channels takes the minimum over the
 * channels that have not ended and are not idle; when that rises, every
 * operator of the task sees it in chain order. An ended channel no longer
 * holds the minimum back. A source that reaches the end of its input sends
 * CS_MAX_WATERMARK before END (cs__tinst_finish), so downstream every timer
 * fires; a stopped source sends none.
 */
#include "host/runtime/cs_runtime_int.h"

/* Whether op is wired, through chained operators, downstream of gen (or is
 * gen). */
static int descends(const cs_plan *p, const cs_opi *op, const cs_opi *gen) {
  const cs_node *n = op->node;
  for (;;) {
    if (n == gen->node) return 1;
    if (!n->chained || n->ninputs != 1) return 0;
    n = &p->nodes[n->in[0].from];
  }
}

int cs__tinst_advance_watermark(cs_tinst *t, int from, int64_t wm) {
  cs_plan *p = t->w->job->plan;
  lua_State *L = t->w->L;
  cs_opi *gen = from >= 0 ? t->ops[from] : NULL;
  if (gen == NULL) {
    if (wm <= t->wm) return 0;
    t->wm = wm;
  } else {
    if (wm <= gen->wm) return 0;
    gen->wm = wm;
  }
  for (int i = from + 1; i < t->nops; i++) {
    cs_opi *op = t->ops[i];
    if (op->wm >= wm || (gen && !descends(p, op, gen))) continue;
    op->wm = wm;
    const cs_op_type *type = op->node->type;
    if (type->on_watermark && type->on_watermark(L, op, wm)) return -1;
  }
  for (int i = 0; i < t->neouts; i++) {
    cs_eout *eo = t->eouts[i];
    if (gen && !descends(p, eo->op, gen)) continue;
    if (cs__eout_control(t, eo, CS_BATCH_WATERMARK, wm)) return -1;
  }
  return 0;
}

int cs__tinst_input_watermark(cs_tinst *t) {
  int64_t min = CS_MAX_WATERMARK;
  int active = 0;
  for (int i = 0; i < t->ninch; i++) {
    struct cs_inch *in = &t->inch[i];
    if (in->ended || in->idle) continue;
    active++;
    if (in->wm < min) min = in->wm;
  }
  /* All idle: event time stands. All ended: the watermark came before END
   * from a source that ended (a stopped one sends none). */
  if (active == 0 || min == CS_NO_TS) return 0;
  return cs__tinst_advance_watermark(t, -1, min);
}

void cs__worker_tick_watermarks(cs_worker *w) {
  uint64_t now = uv_now(&w->loop);
  long long every = w->job->cfg->watermark_interval_ms;
  if (every <= 0) every = 200;
  if (now - w->wm_tick < (uint64_t)every) return;
  w->wm_tick = now;
  int64_t wall = cs_now_ms();
  for (int i = 0; i < w->ntinst; i++) {
    cs_tinst *t = &w->tinst[i];
    if (t->finished) continue;
    for (int k = 0; k < t->nops; k++) {
      cs_opi *op = t->ops[k];
      if (op->node->type->gen_watermark == NULL) continue;
      int idle = 0;
      int64_t wm = op->node->type->gen_watermark(op, (uint64_t)wall, &idle);
          if (idle && !op->wm_idle) {
        op->wm_idle = 1;
        for (int e = 0; e < t->neouts; e++)
          if (descends(w->job->plan, t->eouts[e]->op, op))
            cs__eout_control(t, t->eouts[e], CS_BATCH_IDLE, 0);
      } else if (!idle) {
        op->wm_idle = 0;
      }
      if (wm != CS_NO_TS && cs__tinst_advance_watermark(t, k, wm)) return;
    }
  }
}
