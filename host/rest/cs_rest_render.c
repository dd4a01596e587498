/*
 * cs_rest_render.c - what the endpoint answers: rates sampled from the
 * metrics, /metrics in Prometheus' text format (0.0.4), /jobs/overview and
 * /checkpoints as JSON, and the page.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "host/rest/cs_rest_int.h"

/* ================================================================ rates */

static void rate_update(cs__rate *r, uint64_t v, double dt) {
  if (v < r->last) {
    r->per_s = 0; /* a new attempt started from zero */
  } else if (dt > 0) {
    double x = (double)(v - r->last) / dt;
    r->per_s = r->per_s * 0.5 + x * 0.5;
  }
  r->last = v;
}

void cs__rest_sample(cs__observer *o) {
  cs_metrics *m = o->job->metrics;
  uint64_t now = uv_hrtime();
  double dt = o->last_ns ? (double)(now - o->last_ns) / 1e9 : 0;
  size_t nop = (size_t)m->nnodes * (size_t)m->maxpar;
  for (size_t i = 0; i < nop; i++) {
    rate_update(&o->in[i], cs_metric_get(&m->opm[i].in), dt);
    rate_update(&o->out[i], cs_metric_get(&m->opm[i].out), dt);
  }
  size_t nt = (size_t)m->ntasks * (size_t)m->maxpar;
  for (size_t i = 0; i < nt; i++) {
    rate_update(&o->busy[i], cs_metric_get(&m->tm[i].busy_ns), dt);
    rate_update(&o->bp[i], cs_metrics_bp_ns(&m->tm[i], now), dt);
  }
  o->last_ns = now;
}

static double ratio(double ns_per_s) {
  double r = ns_per_s / 1e9;
  return r < 0 ? 0 : r > 1 ? 1 : r;
}

/* The figures of one operator subtask, as both renderers show them. */
typedef struct sub_view {
  uint64_t in, out, entries, bytes;
  double in_rate, out_rate, busy, bp, idle;
  int64_t wm;
  int has_state;
} sub_view;

static void view_of(cs__observer *o, const cs_node *n, int s, sub_view *v) {
  cs_metrics *m = o->job->metrics;
  size_t i = (size_t)n->index * (size_t)m->maxpar + (size_t)s;
  size_t ti = (size_t)n->task * (size_t)m->maxpar + (size_t)s;
  cs_opm *opm = &m->opm[i];
  v->in = cs_metric_get(&opm->in);
  v->out = cs_metric_get(&opm->out);
  v->entries = cs_metric_get(&opm->state_entries);
  v->bytes = cs_metric_get(&opm->state_bytes);
  v->has_state = (int)cs_metric_get(&opm->has_state);
  v->wm = atomic_load_explicit(&opm->wm, memory_order_relaxed);
  v->in_rate = o->in[i].per_s;
  v->out_rate = o->out[i].per_s;
  v->busy = ratio(o->busy[ti].per_s);
  v->bp = ratio(o->bp[ti].per_s);
  v->idle = 1.0 - v->busy - v->bp;
  if (v->idle < 0) v->idle = 0;
}

static const char *part_name(cs_part p) {
  switch (p) {
  case CS_PART_FORWARD: return "forward";
  case CS_PART_HASH: return "hash";
  case CS_PART_REBALANCE: return "rebalance";
  case CS_PART_BROADCAST: return "broadcast";
  }
  return "?";
}

static const char *backend_of(cs_job *job) {
  return cs_job_uses_rocksdb(job) ? "rocksdb" : "heap";
}

/* ============================================================ Prometheus */

typedef struct out_ctx {
  cs_buf *b;
  int err;
} out_ctx;

#define OUT(c, ...) ((c)->err |= cs_buf_printf((c)->b, __VA_ARGS__))

/* A label value, escaped as the text format asks (\\, \", \n). */
static void label(out_ctx *c, const char *name, const char *v) {
  OUT(c, "%s=\"", name);
  for (const char *p = v ? v : ""; *p; p++) {
    if (*p == '\\') OUT(c, "\\\\");
    else if (*p == '"') OUT(c, "\\\"");
    else if (*p == '\n') OUT(c, "\\n");
    else c->err |= cs_buf_append(c->b, p, 1);
  }
  OUT(c, "\"");
}

static void family(out_ctx *c, const char *name, const char *type, const char *help) {
  OUT(c, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void op_labels(out_ctx *c, cs_job *job, const cs_node *n, int s) {
  OUT(c, "{");
  label(c, "job", job->name);
  OUT(c, ",");
  label(c, "operator", n->name);
  OUT(c, ",");
  label(c, "operator_id", n->id);
  OUT(c, ",subtask=\"%d\"}", s);
}

/* Drops the '}' that closed a label set, to add labels to it. */
static void reopen(out_ctx *c) {
  if (!c->err && c->b->len) c->b->len--;
}

static void num(out_ctx *c, double v) {
  if (isnan(v)) OUT(c, " NaN\n");
  else if (isinf(v)) OUT(c, v > 0 ? " +Inf\n" : " -Inf\n");
  else OUT(c, " %.17g\n", v);
}

/* One family with a value for every operator subtask. which: the field. */
enum { F_IN, F_OUT, F_IN_RATE, F_OUT_RATE, F_BUSY, F_BP, F_IDLE, F_WM, F_ENTRIES, F_BYTES };

static void op_family(out_ctx *c, cs__observer *o, const char *name, const char *type,
                      const char *help, int which) {
  cs_plan *p = o->job->plan;
  family(c, name, type, help);
  for (int i = 0; i < p->nnodes; i++) {
    const cs_node *n = &p->nodes[i];
    for (int s = 0; s < n->parallelism; s++) {
      sub_view v;
      view_of(o, n, s, &v);
      double x = 0;
      switch (which) {
      case F_IN: x = (double)v.in; break;
      case F_OUT: x = (double)v.out; break;
      case F_IN_RATE: x = v.in_rate; break;
      case F_OUT_RATE: x = v.out_rate; break;
      case F_BUSY: x = v.busy; break;
      case F_BP: x = v.bp; break;
      case F_IDLE: x = v.idle; break;
      case F_WM:
        if (v.wm == CS_NO_TS) continue;
        x = v.wm == CS_MAX_WATERMARK ? INFINITY : (double)v.wm;
        break;
      case F_ENTRIES: if (!v.has_state) continue; x = (double)v.entries; break;
      case F_BYTES: if (!v.has_state) continue; x = (double)v.bytes; break;
      }
      OUT(c, "%s", name);
      if (which == F_ENTRIES || which == F_BYTES) {
        op_labels(c, o->job, n, s);
        reopen(c);
        OUT(c, ",backend=\"%s\"}", backend_of(o->job));
      } else {
        op_labels(c, o->job, n, s);
      }
      num(c, x);
    }
  }
}

/* The fill of every input channel of every task subtask. */
static void channel_family(out_ctx *c, cs__observer *o) {
  cs_plan *p = o->job->plan;
  family(c, "cstream_channel_queue_fill_ratio", "gauge",
         "Batches waiting in an input channel of a subtask, as a share of its capacity.");
  for (int e = 0; e < p->nedges; e++) {
    cs_edge *ed = &p->edges[e];
    const cs_node *n = &p->nodes[ed->to];
    for (int a = 0; ed->ch && a < ed->nprod; a++)
      for (int b = 0; b < ed->ncons; b++) {
        cs_channel *ch = ed->ch[a * ed->ncons + b];
        if (ch == NULL) continue;
        size_t used = atomic_load(&ch->tail) - atomic_load(&ch->head);
        OUT(c, "cstream_channel_queue_fill_ratio");
        op_labels(c, o->job, n, b);
        reopen(c);
        OUT(c, ",input=\"%d\",", ed->input);
        label(c, "from_operator_id", p->nodes[ed->from].id);
        OUT(c, ",from_subtask=\"%d\"}", a);
        num(c, (double)used / (double)(ch->mask + 1));
      }
  }
}

static void job_gauge(out_ctx *c, cs_job *job, const char *name, const char *type,
                      const char *help, const char *extra, double v) {
  if (help) family(c, name, type, help);
  OUT(c, "%s{", name);
  label(c, "job", job->name);
  OUT(c, "%s}", extra ? extra : "");
  num(c, v);
}

static void render_metrics(cs__observer *o, out_ctx *c) {
  cs_job *job = o->job;
  cs_metrics *m = job->metrics;
  int64_t now = cs_now_ms();
  job_gauge(c, job, "cstream_job_uptime_seconds", "gauge",
            "Time since the job started.", NULL, (double)(now - m->started_ms) / 1e3);
  job_gauge(c, job, "cstream_job_restarts_total", "counter",
            "Restarts after a failure.", NULL, (double)m->restarts);
  job_gauge(c, job, "cstream_job_checkpoints_total", "counter",
            "Checkpoints (and savepoints) by result.", ",result=\"completed\"",
            (double)m->ckpt_completed);
  job_gauge(c, job, "cstream_job_checkpoints_total", "counter", NULL,
            ",result=\"failed\"", (double)m->ckpt_failed);
  job_gauge(c, job, "cstream_job_reloads_total", "counter",
            "Hot reloads (--watch) by result.", ",result=\"committed\"", (double)m->reloads);
  job_gauge(c, job, "cstream_job_reloads_total", "counter", NULL, ",result=\"failed\"",
            (double)m->reloads_failed);
  if (m->last_ok.id) {
    job_gauge(c, job, "cstream_job_last_checkpoint_id", "gauge",
              "The newest completed checkpoint.", NULL, (double)m->last_ok.id);
    job_gauge(c, job, "cstream_job_last_checkpoint_duration_seconds", "gauge",
              "Its time from trigger to complete.", NULL, m->last_ok.duration_ms / 1e3);
    job_gauge(c, job, "cstream_job_last_checkpoint_sync_pause_seconds", "gauge",
              "Its longest subtask snapshot (processing paused meanwhile).", NULL,
              m->last_ok.sync_ms / 1e3);
    job_gauge(c, job, "cstream_job_last_checkpoint_size_bytes", "gauge",
              "The bytes of its directory (inline state for the memory backend).", NULL,
              (double)m->last_ok.bytes);
  }
  op_family(c, o, "cstream_operator_records_in_total", "counter",
            "Records an operator subtask received.", F_IN);
  op_family(c, o, "cstream_operator_records_out_total", "counter",
            "Records an operator subtask emitted (side outputs included).", F_OUT);
  op_family(c, o, "cstream_operator_records_in_per_second", "gauge",
            "Records received per second, over about the last second.", F_IN_RATE);
  op_family(c, o, "cstream_operator_records_out_per_second", "gauge",
            "Records emitted per second, over about the last second.", F_OUT_RATE);
  op_family(c, o, "cstream_operator_busy_ratio", "gauge",
            "Share of the last second its task subtask spent processing.", F_BUSY);
  op_family(c, o, "cstream_operator_backpressured_ratio", "gauge",
            "Share of the last second its task subtask waited on full outputs.", F_BP);
  op_family(c, o, "cstream_operator_idle_ratio", "gauge",
            "Share of the last second its task subtask had nothing to do.", F_IDLE);
  op_family(c, o, "cstream_operator_watermark_milliseconds", "gauge",
            "The newest watermark the operator subtask has seen (event time).", F_WM);
  op_family(c, o, "cstream_operator_state_entries", "gauge",
            "Entries of the subtask's keyed and operator state (RocksDB: its estimate).",
            F_ENTRIES);
  op_family(c, o, "cstream_operator_state_bytes", "gauge",
            "Bytes of the subtask's state, estimated as cheaply as the backend allows.",
            F_BYTES);
  channel_family(c, o);
}

/* ================================================================= JSON */

static void jstr(out_ctx *c, const char *s) {
  OUT(c, "\"");
  for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\') OUT(c, "\\%c", *p);
    else if (*p == '\n') OUT(c, "\\n");
    else if (*p < 0x20) OUT(c, "\\u%04x", *p);
    else c->err |= cs_buf_append(c->b, p, 1);
  }
  OUT(c, "\"");
}

static void jnum(out_ctx *c, double v) {
  if (isnan(v) || isinf(v)) OUT(c, "null");
  else OUT(c, "%.6g", v);
}

static void jwm(out_ctx *c, int64_t wm) {
  if (wm == CS_NO_TS) OUT(c, "null");
  else if (wm == CS_MAX_WATERMARK) OUT(c, "\"end\"");
  else OUT(c, "%lld", (long long)wm);
}

/* The fullest input channel of subtask s of node n, as a share of its
 * capacity, or -1 when it has no input channel (a source, a chained
 * operator). */
static double queue_fill(cs__observer *o, const cs_node *n, int s) {
  cs_plan *p = o->job->plan;
  double most = -1;
  for (int k = 0; k < n->ninputs; k++) {
    if (n->in[k].edge < 0) continue;
    cs_edge *e = &p->edges[n->in[k].edge];
    for (int a = 0; e->ch && s < e->ncons && a < e->nprod; a++) {
      cs_channel *ch = e->ch[a * e->ncons + s];
      if (ch == NULL) continue;
      double f = (double)(atomic_load(&ch->tail) - atomic_load(&ch->head)) /
                 (double)(ch->mask + 1);
      if (f > most) most = f;
    }
  }
  return most;
}

static void jsub(out_ctx *c, const sub_view *v) {
  OUT(c, "\"records_in\":%llu,\"records_out\":%llu,\"in_per_second\":",
      (unsigned long long)v->in, (unsigned long long)v->out);
  jnum(c, v->in_rate);
  OUT(c, ",\"out_per_second\":");
  jnum(c, v->out_rate);
  OUT(c, ",\"busy\":");
  jnum(c, v->busy);
  OUT(c, ",\"backpressured\":");
  jnum(c, v->bp);
  OUT(c, ",\"idle\":");
  jnum(c, v->idle);
  OUT(c, ",\"watermark\":");
  jwm(c, v->wm);
  OUT(c, ",\"state_entries\":%llu,\"state_bytes\":%llu", (unsigned long long)v->entries,
      (unsigned long long)v->bytes);
}

/* One vertex: totals and rates summed over its subtasks, time shares and
 * the watermark as the worst subtask's, then every subtask. */
static void jvertex(out_ctx *c, cs__observer *o, const cs_node *n) {
  sub_view t = {0}, v;
  t.wm = CS_NO_TS;
  for (int s = 0; s < n->parallelism; s++) {
    view_of(o, n, s, &v);
    t.in += v.in, t.out += v.out, t.entries += v.entries, t.bytes += v.bytes;
    t.in_rate += v.in_rate, t.out_rate += v.out_rate;
    if (v.busy > t.busy) t.busy = v.busy;
    if (v.bp > t.bp) t.bp = v.bp;
    if (s == 0 || v.wm < t.wm) t.wm = v.wm;
  }
  t.idle = 1 - t.busy - t.bp;
  if (t.idle < 0) t.idle = 0;
  double qmax = -1;
  for (int s = 0; s < n->parallelism; s++) {
    double q = queue_fill(o, n, s);
    if (q > qmax) qmax = q;
  }
  OUT(c, "{\"index\":%d,\"input_queue_fill\":", n->index);
  if (qmax < 0) OUT(c, "null"); else jnum(c, qmax);
  OUT(c, ",\"id\":");
  jstr(c, n->id);
  OUT(c, ",\"name\":");
  jstr(c, n->name);
  OUT(c, ",\"kind\":");
  jstr(c, n->type ? n->type->name : "?");
  OUT(c, ",\"parallelism\":%d,\"task\":%d,\"chained\":%s,\"keyed\":%s,\"source\":%s,",
      n->parallelism, n->task, n->chained ? "true" : "false", n->keyed ? "true" : "false",
      n->ninputs == 0 ? "true" : "false");
  jsub(c, &t);
  OUT(c, ",\"subtasks\":[");
  for (int s = 0; s < n->parallelism; s++) {
    view_of(o, n, s, &v);
    OUT(c, "%s{\"subtask\":%d,", s ? "," : "", s);
    jsub(c, &v);
    double q = queue_fill(o, n, s);
    OUT(c, ",\"input_queue_fill\":");
    if (q < 0) OUT(c, "null"); else jnum(c, q);
    OUT(c, "}");
  }
  OUT(c, "]}");
}

static void render_overview(cs__observer *o, out_ctx *c) {
  cs_job *job = o->job;
  cs_plan *p = job->plan;
  cs_metrics *m = job->metrics;
  int64_t now = cs_now_ms();
  OUT(c, "{\"job\":");
  jstr(c, job->name);
  OUT(c, ",\"state\":\"%s\",\"backend\":", atomic_load(&job->failed) ? "FAILING"
                                           : job->stopping ? "STOPPING" : "RUNNING");
  jstr(c, job->cfg->backend);
  OUT(c, ",\"parallelism\":%d,\"max_parallelism\":%d,\"started_ms\":%lld,\"now_ms\":%lld,"
      "\"uptime_ms\":%lld,\"restarts\":%llu,\"checkpoint_interval_ms\":%lld,\"vertices\":[",
      p->nworkers, p->max_parallelism, (long long)m->started_ms, (long long)now,
      (long long)(now - m->started_ms), (unsigned long long)m->restarts,
      job->cfg->interval_ms);
  for (int i = 0; i < p->nnodes; i++) {
    if (i) OUT(c, ",");
    jvertex(c, o, &p->nodes[i]);
  }
  OUT(c, "],\"edges\":[");
  int first = 1;
  for (int i = 0; i < p->nnodes; i++)
    for (int k = 0; k < p->nodes[i].ninputs; k++) {
      const cs_input *in = &p->nodes[i].in[k];
      cs_part part = in->edge >= 0 ? p->edges[in->edge].part : CS_PART_FORWARD;
      OUT(c, "%s{\"from\":%d,\"to\":%d,\"input\":%d,\"partitioning\":\"%s\",\"chained\":%s,"
          "\"side_output\":", first ? "" : ",", in->from, i, k, part_name(part),
          in->edge < 0 ? "true" : "false");
      first = 0;
      if (in->tag) jstr(c, in->tag); else OUT(c, "null");
      OUT(c, "}");
    }
  OUT(c, "],\"reloads\":{\"committed\":%llu,\"failed\":%llu,\"events\":[",
      (unsigned long long)m->reloads, (unsigned long long)m->reloads_failed);
  uint64_t n = m->nreloads_ev < CS_METRICS_HISTORY ? m->nreloads_ev : CS_METRICS_HISTORY;
  for (uint64_t k = 0; k < n; k++) {
    const cs_reload_event *e = &m->reloads_ev[(m->nreloads_ev - 1 - k) % CS_METRICS_HISTORY];
    OUT(c, "%s{\"at_ms\":%lld,\"ok\":%s,\"what\":", k ? "," : "", (long long)e->at_ms,
        e->ok ? "true" : "false");
    jstr(c, e->what);
    OUT(c, "}");
  }
  OUT(c, "]}}\n");
}

static void jckpt(out_ctx *c, const cs_ckpt_event *e) {
  OUT(c, "{\"id\":%lld,\"status\":\"%s\",\"savepoint\":%s,\"at_ms\":%lld,", (long long)e->id,
      e->ok ? "COMPLETED" : "FAILED", e->savepoint ? "true" : "false", (long long)e->at_ms);
  if (e->ok) {
    OUT(c, "\"duration_ms\":");
    jnum(c, e->duration_ms);
    OUT(c, ",\"sync_pause_ms\":");
    jnum(c, e->sync_ms);
    OUT(c, ",\"size_bytes\":%llu}", (unsigned long long)e->bytes);
  } else {
    OUT(c, "\"failure\":");
    jstr(c, e->why);
    OUT(c, "}");
  }
}

static void render_checkpoints(cs__observer *o, out_ctx *c) {
  cs_metrics *m = o->job->metrics;
  OUT(c, "{\"job\":");
  jstr(c, o->job->name);
  OUT(c, ",\"interval_ms\":%lld,\"completed\":%llu,\"failed\":%llu,\"latest\":",
      o->job->cfg->interval_ms, (unsigned long long)m->ckpt_completed,
      (unsigned long long)m->ckpt_failed);
  if (m->last_ok.id) jckpt(c, &m->last_ok); else OUT(c, "null");
  OUT(c, ",\"history\":[");
  uint64_t n = m->nckpts < CS_METRICS_HISTORY ? m->nckpts : CS_METRICS_HISTORY;
  for (uint64_t k = 0; k < n; k++) {
    if (k) OUT(c, ",");
    jckpt(c, &m->ckpts[(m->nckpts - 1 - k) % CS_METRICS_HISTORY]);
  }
  OUT(c, "]}\n");
}

int cs__rest_render(cs__observer *o, const char *path, cs_buf *out, const char **type) {
  out_ctx c = {out, 0};
  int code = 200;
  if (strcmp(path, "/metrics") == 0) {
    *type = "text/plain; version=0.0.4; charset=utf-8";
    render_metrics(o, &c);
  } else if (strcmp(path, "/jobs/overview") == 0) {
    *type = "application/json";
    render_overview(o, &c);
  } else if (strcmp(path, "/checkpoints") == 0) {
    *type = "application/json";
    render_checkpoints(o, &c);
  } else if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
    *type = "text/html; charset=utf-8";
    OUT(&c, "%s", cs__rest_page);
  } else {
    *type = "text/plain; charset=utf-8";
    OUT(&c, "no such path: %s (try /, /metrics, /jobs/overview, /checkpoints)\n", path);
    code = 404;
  }
  return c.err ? 500 : code;
}
