/*
 * cs_timers.c - timers of keyed operators (process functions, and the
 * windows built on them), in event time and in processing time.
 *
 * The truth is the operator subtask's backend: a map state "<id>/_timers"
 * holds, under each key, one entry per timer whose user key is the domain
 * byte and the time (big-endian, sign bit flipped, so a key's timers sort
 * by time). A checkpoint therefore carries the timers by key group, and a
 * restore at another parallelism gives each subtask the timers of its key
 * groups, like any keyed state. Registering a timer that exists is a no-op.
 *
 * Two binary heaps per operator (one per domain) order the timers by time
 * for firing; they are rebuilt from the backend when the operator opens.
 * A deleted timer leaves its heap entry behind: it is skipped when it
 * comes up, since the backend no longer has it. Processing-time timers wake
 * the worker through a libuv timer armed at the earliest one.
 */
#include <string.h>
#include <time.h>

#include "host/runtime/cs_runtime_int.h"
#include "state/cs_codec.h"

/* One timer in a heap: its time, key group and a copy of its key. */
typedef struct tentry {
  int64_t ts;
  int kg;
  uint32_t keylen;
  char *key;
} tentry;

typedef struct theap {
  tentry *v;
  size_t n, cap;
} theap;

struct cs_timers {
  cs_opi *op;
  int state;   /* the backend's "<id>/_timers" map state */
  theap q[2];  /* [CS_TIME_EVENT - 1], [CS_TIME_PROCESSING - 1] */
  cs_timer_fn fire;
  uv_timer_t uvt; /* wakes the worker for the earliest processing timer */
  int uvt_closed;
  int64_t armed; /* the processing time uvt is armed for, or CS_NO_TS */
  int firing;    /* inside cs_timers_fire: the uv callback waits */
};

int64_t cs_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ================================================================ heaps */

static int tentry_less(const tentry *a, const tentry *b) { return a->ts < b->ts; }

static int heap_push(theap *h, int64_t ts, int kg, cs_slice key) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 16;
    tentry *v = cs_realloc(h->v, cap * sizeof(*v));
    if (v == NULL) return CS_ENOMEM;
    h->v = v;
    h->cap = cap;
  }
  tentry e = {ts, kg, (uint32_t)key.len, cs_malloc(key.len ? key.len : 1)};
  if (e.key == NULL) return CS_ENOMEM;
  if (key.len) memcpy(e.key, key.data, key.len);
  size_t i = h->n++;
  while (i > 0) { /* sift up */
    size_t parent = (i - 1) / 2;
    if (!tentry_less(&e, &h->v[parent])) break;
    h->v[i] = h->v[parent];
    i = parent;
  }
  h->v[i] = e;
  return 0;
}

/* Removes the earliest entry into *out (the caller frees out->key). */
static void heap_pop(theap *h, tentry *out) {
  *out = h->v[0];
  tentry last = h->v[--h->n];
  size_t i = 0;
  for (;;) { /* sift down */
    size_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && tentry_less(&h->v[c + 1], &h->v[c])) c++;
    if (!tentry_less(&h->v[c], &last)) break;
    h->v[i] = h->v[c];
    i = c;
  }
  if (h->n > 0) h->v[i] = last;
}

static void heap_free(theap *h) {
  for (size_t i = 0; i < h->n; i++) cs_free(h->v[i].key);
  cs_free(h->v);
  memset(h, 0, sizeof(*h));
}

/* ============================================================ backend */

/* The user key of a timer: the domain, then ts big-endian with the sign
 * bit flipped (unsigned order is time order). */
static void timer_ukey(int domain, int64_t ts, char out[9]) {
  uint64_t u = (uint64_t)ts ^ 0x8000000000000000ull;
  out[0] = (char)domain;
  for (int i = 0; i < 8; i++) out[1 + i] = (char)(u >> (56 - 8 * i));
}

static int64_t ukey_ts(const char *p) {
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) u = (u << 8) | (uint8_t)p[1 + i];
  return (int64_t)(u ^ 0x8000000000000000ull);
}

/* Loads every timer of op's key groups from the backend into the heaps
 * (after a restore). Returns 0 or a negative error. */
static int load_timers(struct cs_timers *tm) {
  cs_opi *op = tm->op;
  cs_backend *be = op->be;
  int first, last;
  cs_key_group_range(op->subtask, op->w->job->plan->max_parallelism,
                     op->node->parallelism, &first, &last);
  cs_backend_iter *it = NULL;
  int rc = be->ops->scan_iter(be, first, last, &it);
  if (rc) return rc;
  cs_backend_entry e;
  while ((rc = be->ops->iter_next(it, &e)) == 1) {
    if (e.state != tm->state || e.ukey.len != 9) continue;
    int domain = e.ukey.data[0];
    if (domain != CS_TIME_EVENT && domain != CS_TIME_PROCESSING) continue;
    rc = heap_push(&tm->q[domain - 1], ukey_ts(e.ukey.data), e.kg, e.key);
    if (rc) break;
  }
  be->ops->iter_destroy(it);
  return rc < 0 ? rc : 0;
}

/* ================================================== processing time */

static void on_uv_timer(uv_timer_t *h);

/* Arms the libuv timer for the earliest processing-time timer. */
static void arm(struct cs_timers *tm) {
  theap *h = &tm->q[CS_TIME_PROCESSING - 1];
  if (h->n == 0) {
    uv_timer_stop(&tm->uvt);
    tm->armed = CS_NO_TS;
    return;
  }
  int64_t at = h->v[0].ts;
  if (tm->armed != CS_NO_TS && tm->armed <= at) return;
  int64_t now = cs_now_ms();
  tm->armed = at;
  uv_timer_start(&tm->uvt, on_uv_timer, at > now ? (uint64_t)(at - now) : 0, 0);
}

static void on_uv_timer(uv_timer_t *h) {
  struct cs_timers *tm = container_of(h, struct cs_timers, uvt);
  cs_opi *op = tm->op;
  cs_worker *w = op->w;
  tm->armed = CS_NO_TS;
  if (atomic_load(&w->abort) || op->t->finished || tm->firing) return;
  cs_timers_fire(w->L, op, CS_TIME_PROCESSING, cs_now_ms());
  arm(tm);
  cs_worker_kick(w); /* what the timers emitted goes out */
}

/* ============================================================= public */

int cs_timers_open(cs_opi *op, cs_timer_fn fire) {
  if (op->timers) {
    op->timers->fire = fire;
    return 0;
  }
  cs_backend *be = cs_opi_backend(op);
  if (be == NULL) return -1;
  struct cs_timers *tm = cs_calloc(1, sizeof(*tm));
  if (tm == NULL) return cs_opi_fail(op->w->L, op, 0, "out of memory");
  char name[300];
  snprintf(name, sizeof(name), "%s/_timers", op->node->id);
  tm->op = op;
  tm->fire = fire;
  tm->armed = CS_NO_TS;
  tm->state = be->ops->register_state(be, name, CS_STATE_MAP);
  int rc = tm->state < 0 ? tm->state : load_timers(tm);
  if (rc) {
    heap_free(&tm->q[0]);
    heap_free(&tm->q[1]);
    cs_free(tm);
    return cs_opi_fail(op->w->L, op, 0, cs_strerror(rc));
  }
  uv_timer_init(&op->w->loop, &tm->uvt);
  op->timers = tm;
  arm(tm);
  return 0;
}

static void uvt_closed(uv_handle_t *h) {
  struct cs_timers *tm = container_of((uv_timer_t *)h, struct cs_timers, uvt);
  tm->uvt_closed = 1;
}

void cs_timers_destroy(cs_opi *op) {
  struct cs_timers *tm = op->timers;
  if (tm == NULL) return;
  uv_close((uv_handle_t *)&tm->uvt, uvt_closed);
  for (int i = 0; i < 100 && !tm->uvt_closed; i++) uv_run(&op->w->loop, UV_RUN_NOWAIT);
  heap_free(&tm->q[0]);
  heap_free(&tm->q[1]);
  cs_free(tm);
  op->timers = NULL;
}

/* Registers (add) or deletes the timer of the current key at ts. */
static int timer_change(cs_opi *op, int domain, int64_t ts, int add) {
  struct cs_timers *tm = op->timers;
  cs_worker *w = op->w;
  if (tm == NULL || !w->key_valid) return CS_EINVAL;
  char uk[9];
  timer_ukey(domain, ts, uk);
  cs_slice ukey = {uk, 9}, val;
  cs_backend *be = op->be;
  if (!add) return be->ops->del(be, tm->state, w->cur_kg, w->cur_key, &ukey);
  int rc = be->ops->get(be, tm->state, w->cur_kg, w->cur_key, &ukey, &val);
  if (rc == 0) return 0; /* already registered */
  if (rc != CS_ENOTFOUND) return rc;
  cs_slice nil = {"\xc0", 1};
  rc = be->ops->put(be, tm->state, w->cur_kg, w->cur_key, &ukey, nil);
  if (rc == 0) rc = heap_push(&tm->q[domain - 1], ts, w->cur_kg, w->cur_key);
  if (rc == 0 && domain == CS_TIME_PROCESSING) arm(tm);
  return rc;
}

int cs_timer_register(cs_opi *op, int domain, int64_t ts) {
  return timer_change(op, domain, ts, 1);
}

int cs_timer_delete(cs_opi *op, int domain, int64_t ts) {
  return timer_change(op, domain, ts, 0);
}

int cs_timers_fire(lua_State *L, cs_opi *op, int domain, int64_t upto) {
  struct cs_timers *tm = op->timers;
  if (tm == NULL) return 0;
  theap *h = &tm->q[domain - 1];
  cs_worker *w = op->w;
  cs_backend *be = op->be;
  /* The record being processed, if any, gets its context back after. */
  int saved_kg = w->cur_kg, saved_valid = w->key_valid;
  cs_slice saved_key = w->cur_key;
  int64_t saved_ts = w->cur_ts;
  int rc = 0;
  tm->firing++;
  while (rc == 0 && h->n > 0 && h->v[0].ts <= upto) {
    tentry e;
    heap_pop(h, &e);
    char uk[9];
    timer_ukey(domain, e.ts, uk);
    cs_slice key = {e.key, e.keylen}, ukey = {uk, 9}, val;
    if (be->ops->get(be, tm->state, e.kg, key, &ukey, &val) == 0 &&
        (rc = be->ops->del(be, tm->state, e.kg, key, &ukey)) == 0) {
      w->cur_kg = e.kg;
      w->cur_key = key;
      w->key_valid = 1;
      w->cur_ts = e.ts;
      w->cur_domain = domain;
      w->cur_timer = e.ts;
      w->cur_op = op;
      rc = tm->fire(L, op, domain, e.ts) ? -1 : 0;
      w->cur_domain = 0;
    } else if (rc) {
      rc = cs_opi_fail(L, op, 0, cs_strerror(rc));
    }
    cs_free(e.key);
    if (atomic_load_explicit(&w->abort, memory_order_relaxed)) rc = -1;
  }
  tm->firing--;
  w->cur_kg = saved_kg;
  w->cur_key = saved_key;
  w->key_valid = saved_valid;
  w->cur_ts = saved_ts;
  return rc;
}
