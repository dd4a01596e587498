/*
 * cs_progress.c - the one-line status on a terminal: records per second
 * into the job (read by its sources) and out of it (reached its sinks),
 * the newest checkpoint, and event time where it runs. Redrawn in place
 * on stderr every tick (twice a second) and cleared when the attempt
 * ends. On when stderr is a TTY, or with --progress; never with --quiet.
 */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "host/rest/cs_rest_int.h"

static void human(char *buf, size_t len, double x) {
  if (x >= 1e6) snprintf(buf, len, "%.2fM", x / 1e6);
  else if (x >= 1e4) snprintf(buf, len, "%.1fk", x / 1e3);
  else snprintf(buf, len, "%.0f", x);
}

static int is_sink(const cs_plan *p, int node) {
  for (int i = 0; i < p->nnodes; i++)
    for (int k = 0; k < p->nodes[i].ninputs; k++)
      if (p->nodes[i].in[k].from == node) return 0;
  return 1;
}

void cs__progress_draw(cs__observer *o) {
  cs_job *job = o->job;
  cs_plan *p = job->plan;
  cs_metrics *m = job->metrics;
  double in = 0, out = 0;
  uint64_t total = 0;
  int64_t wm = CS_NO_TS;
  int wm_set = 0;
  for (int i = 0; i < p->nnodes; i++) {
    const cs_node *n = &p->nodes[i];
    int src = n->ninputs == 0, sink = is_sink(p, i);
    for (int s = 0; s < n->parallelism; s++) {
      size_t k = (size_t)i * (size_t)m->maxpar + (size_t)s;
      if (src) in += o->out[k].per_s, total += o->out[k].last;
      if (sink) {
        out += o->in[k].per_s;
        int64_t w = atomic_load_explicit(&m->opm[k].wm, memory_order_relaxed);
        if (w != CS_NO_TS && (!wm_set || w < wm)) wm = w, wm_set = 1;
      }
    }
  }
  char line[512], a[32], b[32], c[32];
  human(a, sizeof(a), in);
  human(b, sizeof(b), out);
  human(c, sizeof(c), (double)total);
  int len = snprintf(line, sizeof(line), "cstream-lua: %s | %s rec/s in, %s rec/s out (%s read)",
                     job->name, a, b, c);
  int64_t now = cs_now_ms();
  if (m->last_ok.id && len < (int)sizeof(line))
    len += snprintf(line + len, sizeof(line) - (size_t)len,
                    " | checkpoint %lld %llds ago (%.0f ms)", (long long)m->last_ok.id,
                    (long long)((now - m->last_ok.at_ms) / 1000), m->last_ok.duration_ms);
  if (m->ckpt_failed && len < (int)sizeof(line))
    len += snprintf(line + len, sizeof(line) - (size_t)len, ", %llu failed",
                    (unsigned long long)m->ckpt_failed);
  if (wm_set && wm != CS_MAX_WATERMARK && len < (int)sizeof(line)) {
    time_t t = (time_t)(wm / 1000);
    struct tm tm;
    char ts[32];
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    len += snprintf(line + len, sizeof(line) - (size_t)len, " | watermark %s.%03dZ", ts,
                    (int)(wm % 1000 + 1000) % 1000);
    if (now - wm >= 0 && now - wm < 86400000 && len < (int)sizeof(line))
      len += snprintf(line + len, sizeof(line) - (size_t)len, " (lag %.1f s)",
                      (double)(now - wm) / 1e3);
  }
  if (len >= (int)sizeof(line)) len = (int)sizeof(line) - 1;
  struct winsize ws;
  int width = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col ? ws.ws_col : 160;
  if (len > width - 1) len = width - 1;
  fprintf(stderr, "\r\033[K%.*s", len, line);
  fflush(stderr);
  o->shown = 1;
}

void cs__progress_clear(cs__observer *o) {
  if (!o->shown) return;
  fprintf(stderr, "\r\033[K");
  fflush(stderr);
  o->shown = 0;
}
