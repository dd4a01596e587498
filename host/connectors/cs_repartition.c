/*
 * cs_repartition.c - a group's repartition topics (docs/scale-out.md,
 * cstream/group.lua): the key_by exchanges between processes.
 *
 * sink_repartition is chained to a kafka_source (through the operators
 * before key_by and a map that pairs each record with its key). Each
 * {key, record} goes to the partition of its key's key group at
 * cluster.partitions logical subtasks, as the encoded record, with the
 * Kafka timestamp its event time and the header cs.src =
 * "<topic>:<partition>:<offset>:<n>": where the record came from (n: the
 * how-manieth record made from that source record). The producer is
 * idempotent and flushed at every barrier, before the checkpoint (and so
 * the source offsets committed after it) can complete: at least once.
 *
 * source_repartition subtask r reads partition r when this process runs
 * logical subtask r. It keeps, for every source partition, the largest
 * (offset, n) it passed on, and drops a record at or below it: the copies
 * a source replays after a takeover. Its checkpointed position is
 * "repart <next offset>,<topic>:<partition>=<offset>.<n>,...", so state,
 * offset and the table come back together.
 */
#include <fcntl.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/connectors/cs_kafka_int.h"
#include "state/cs_codec.h"

#define SRC_HEADER "cs.src"
#define RECORDS_PER_STEP 512

/* ================================================================ sink */

typedef struct rsink {
  cs_kafka_health h; /* first: the client's opaque */
  cs_opi *op;
  rd_kafka_t *rk;
  int failed_delivery;
  char delivery_err[600];
  cs_buf key;
  /* the source record the last one came from, and how many came of it */
  const char *last_topic;
  int32_t last_part;
  int64_t last_off, n;
} rsink;

static int rsink_fail(cs_opi *op, const char *what, const char *detail) {
  char msg[1400];
  snprintf(msg, sizeof(msg), "repartition topic '%s' on %s: %s%s", op->node->path,
           op->w->job->cfg->kafka_bootstrap, what, detail ? detail : "");
  return cs_opi_fail(op->w->L, op, 0, msg);
}

static void rsink_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  rsink *s = opaque;
  if (m->err && !s->failed_delivery) {
    s->failed_delivery = 1;
    snprintf(s->delivery_err, sizeof(s->delivery_err),
             "a record could not be delivered to partition %d: %s", (int)m->partition,
             rd_kafka_err2str(m->err));
  }
}

static int rsink_bind(lua_State *L, cs_opi *op, int env_idx) {
  (void)env_idx;
  if (op->data) return 0; /* a reload */
  rsink *s = cs_calloc(1, sizeof(*s));
  if (s == NULL) return cs_opi_fail(L, op, 0, "out of memory");
  s->op = op;
  op->data = s;
  return 0;
}

static int rsink_open(lua_State *L, cs_opi *op) {
  (void)L;
  rsink *s = op->data;
  if (op->w->reloading || s->rk) return 0;
  const cs_node *root = &op->w->job->plan->nodes[op->t->task->root];
  if (root->kind != CS_OP_SRC_KAFKA)
    return rsink_fail(op, "in a group, the operators between a kafka_source and key_by "
                      "must run chained to it (no rebalance(), broadcast() or "
                      "set_parallelism() before key_by)", NULL);
  cs_kafka_props dflt = {0}, force = {0};
  int rc = cs__kafka_props_add(&dflt, "linger.ms", "5");
  if (rc == 0) rc = cs__kafka_props_add(&force, "enable.idempotence", "true");
  char err[1200];
  if (rc == 0)
    s->rk = cs__kafka_new(RD_KAFKA_PRODUCER, op->w->job->cfg->kafka_bootstrap, &dflt, NULL,
                          &force, &s->h, rsink_delivered, err, sizeof(err));
  cs__kafka_props_free(&dflt);
  cs__kafka_props_free(&force);
  if (s->rk == NULL) return rsink_fail(op, rc ? "out of memory" : err, NULL);
  return 0;
}

/* The canonical key of the encoded key k (cs_codec_encode_key's bytes). */
static int canonical_key(lua_State *L, rsink *s, cs_slice k) {
  cs_buf_reset(&s->key);
  if (cs_codec_is_key_scalar(k) && k.data[0] != (char)0xc0)
    return cs_buf_append(&s->key, k.data, k.len) ? CS_ENOMEM : 0;
  if (cs_codec_decode(L, k.data, k.len, NULL)) return CS_EDECODE;
  char err[200];
  int rc = cs_codec_encode_key(L, -1, &s->key, err, sizeof(err));
  lua_pop(L, 1);
  return rc;
}

static int rsink_process_encoded(lua_State *L, cs_opi *op, int input, cs_slice rec) {
  (void)input;
  rsink *s = op->data;
  cs_worker *w = op->w;
  cs_slice k, v;
  if (!cs_codec_array_elem(rec, 1, &k) || !cs_codec_array_elem(rec, 2, &v))
    return rsink_fail(op, "internal error: not a {key, record} pair", NULL);
  if (canonical_key(L, s, k)) return rsink_fail(op, "the key cannot be used", NULL);
  int maxp = w->job->plan->max_parallelism, r = w->job->group_n;
  int part = cs_key_group_owner(cs_key_group(s->key.data, s->key.len, maxp), maxp, r);
  if (w->cur_src_topic == NULL)
    return rsink_fail(op, "internal error: a record without its source position", NULL);
  if (s->last_topic == w->cur_src_topic && s->last_part == w->cur_src_part &&
      s->last_off == w->cur_src_off) {
    s->n++;
  } else {
    s->last_topic = w->cur_src_topic;
    s->last_part = w->cur_src_part;
    s->last_off = w->cur_src_off;
    s->n = 0;
  }
  char hdr[400];
  snprintf(hdr, sizeof(hdr), "%s:%d:%lld:%lld", w->cur_src_topic, (int)w->cur_src_part,
           (long long)w->cur_src_off, (long long)s->n);
  int64_t ts = w->cur_ts == CS_NO_TS || w->cur_ts < 0 ? 0 : w->cur_ts;
  rd_kafka_resp_err_t e;
  for (;;) {
    e = rd_kafka_producev(s->rk, RD_KAFKA_V_TOPIC(op->node->path), RD_KAFKA_V_PARTITION(part),
                          RD_KAFKA_V_VALUE((void *)v.data, v.len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(ts),
                          RD_KAFKA_V_HEADER(SRC_HEADER, hdr, -1), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
    rd_kafka_poll(s->rk, 10);
  }
  if (e) return rsink_fail(op, "cannot produce a record: ", rd_kafka_err2str(e));
  rd_kafka_poll(s->rk, 0);
  if (s->failed_delivery) return rsink_fail(op, s->delivery_err, NULL);
  return 0;
}

static int rsink_process(lua_State *L, cs_opi *op, int input) {
  cs_buf b = {0};
  char err[200];
  int rc = cs_codec_encode(L, -1, &b, err, sizeof(err));
  lua_pop(L, 1);
  if (rc) {
    cs_buf_free(&b);
    return rsink_fail(op, "the record cannot be encoded: ", err);
  }
  cs_slice rec = {b.data, b.len};
  rc = rsink_process_encoded(L, op, input, rec);
  cs_buf_free(&b);
  return rc;
}

/* At the barrier: every record before it is acknowledged. */
static int rsink_flush_all(cs_opi *op) {
  rsink *s = op->data;
  if (s == NULL || s->rk == NULL) return 0;
  rd_kafka_resp_err_t e =
      rd_kafka_flush(s->rk, (int)op->w->job->cfg->kafka_connect_timeout_ms);
  if (s->failed_delivery) return rsink_fail(op, s->delivery_err, NULL);
  if (e) return rsink_fail(op, "records not acknowledged within kafka.connect-timeout: ",
                           rd_kafka_err2str(e));
  return 0;
}

static int rsink_snapshot(lua_State *L, cs_opi *op) {
  (void)L;
  return op->w->reloading ? 0 : rsink_flush_all(op);
}

static int rsink_close(lua_State *L, cs_opi *op) {
  (void)L;
  return op->w->reloading ? 0 : rsink_flush_all(op);
}

static void rsink_destroy(cs_opi *op) {
  rsink *s = op->data;
  if (s == NULL) return;
  if (s->rk) {
    if (atomic_load(&op->w->job->failed))
      rd_kafka_purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_destroy(s->rk);
  }
  cs_buf_free(&s->key);
  cs_free(s);
  op->data = NULL;
}

const cs_op_type cs_sink_repartition = {
    .name = "sink_repartition",
    .bind = rsink_bind,
    .open = rsink_open,
    .snapshot_state = rsink_snapshot,
    .close = rsink_close,
    .process = rsink_process,
    .process_encoded = rsink_process_encoded,
    .destroy = rsink_destroy,
};

/* ============================================================== source */

typedef struct seen {
  char *src; /* "<topic>:<partition>" */
  int64_t off, n;
} seen;

typedef struct rsrc {
  cs_kafka_health h; /* first: the client's opaque */
  cs_tinst *t;
  rd_kafka_t *rk;
  rd_kafka_queue_t *q;
  int64_t next; /* next offset of partition r, or RD_KAFKA_OFFSET_BEGINNING */
  int nseen;
  seen *seen;
  int pipefd[2];
  uv_poll_t poll;
  int poll_open, poll_closed;
} rsrc;

static int rsrc_fail(cs_tinst *t, const char *what) {
  char msg[1400];
  snprintf(msg, sizeof(msg), "repartition topic '%s' partition %d on %s: %s",
           t->ops[0]->node->path, t->subtask, t->w->job->cfg->kafka_bootstrap, what);
  t->src_done = 1;
  return cs_opi_fail(t->w->L, t->ops[0], 0, msg);
}

static seen *find_seen(rsrc *s, const char *src, size_t len) {
  for (int i = 0; i < s->nseen; i++)
    if (strlen(s->seen[i].src) == len && memcmp(s->seen[i].src, src, len) == 0)
      return &s->seen[i];
  return NULL;
}

static seen *add_seen(rsrc *s, const char *src, size_t len) {
  seen *ns = cs_realloc(s->seen, sizeof(*ns) * (size_t)(s->nseen + 1));
  if (ns == NULL) return NULL;
  s->seen = ns;
  seen *e = &ns[s->nseen];
  e->src = cs_malloc(len + 1);
  if (e->src == NULL) return NULL;
  memcpy(e->src, src, len);
  e->src[len] = '\0';
  e->off = e->n = -1;
  s->nseen++;
  return e;
}

/* Reads the restored position "repart N,src=off.n,...". 0 or -1. */
static int parse_position(rsrc *s, const char *p) {
  if (strncmp(p, "repart ", 7) != 0) return -1;
  char *e;
  s->next = strtoll(p + 7, &e, 10);
  while (*e == ',') {
    const char *src = e + 1, *eq = strchr(src, '=');
    if (eq == NULL) return -1;
    seen *x = add_seen(s, src, (size_t)(eq - src));
    if (x == NULL) return -1;
    x->off = strtoll(eq + 1, &e, 10);
    if (*e != '.') return -1;
    x->n = strtoll(e + 1, &e, 10);
  }
  return *e == '\0' ? 0 : -1;
}

static void rsrc_on_pipe(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  rsrc *s = h->data;
  cs_worker_kick_from_pipe(s->t->w, s->pipefd[0]);
}

static void rsrc_poll_closed(uv_handle_t *h) {
  rsrc *s = h->data;
  s->poll_closed = 1;
}

static int rsrc_start(lua_State *L, cs_tinst *t) {
  (void)L;
  cs_job *job = t->w->job;
  rsrc *s = cs_calloc(1, sizeof(*s));
  if (s == NULL) return rsrc_fail(t, "out of memory");
  t->src = s;
  s->t = t;
  s->pipefd[0] = s->pipefd[1] = -1;
  s->next = RD_KAFKA_OFFSET_BEGINNING;
  if (!cs_job_runs_subtask(job, t->subtask)) return 0; /* another process's */
  const cs_ckpt *ck = cs_job_restore_for(job, t->subtask);
  const cs_ckpt_part *part = ck ? cs_ckpt_find(ck, t->ops[0]->node->id, t->subtask) : NULL;
  if (part && part->source && strcmp(part->source, "none") != 0 &&
      parse_position(s, part->source))
    return rsrc_fail(t, "the checkpoint holds a malformed position");
  char err[1200], group[400];
  snprintf(group, sizeof(group), "%s-reader", job->cfg->group);
  cs_kafka_props force = {0};
  int rc = cs__kafka_props_add(&force, "group.id", group);
  if (rc == 0) rc = cs__kafka_props_add(&force, "enable.auto.commit", "false");
  if (rc == 0) rc = cs__kafka_props_add(&force, "enable.auto.offset.store", "false");
  if (rc == 0)
    s->rk = cs__kafka_new(RD_KAFKA_CONSUMER, job->cfg->kafka_bootstrap, NULL, NULL, &force,
                          &s->h, NULL, err, sizeof(err));
  cs__kafka_props_free(&force);
  if (s->rk == NULL) return rsrc_fail(t, rc ? "out of memory" : err);
  rd_kafka_poll_set_consumer(s->rk);
  s->q = rd_kafka_queue_get_consumer(s->rk);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, t->ops[0]->node->path, t->subtask)->offset = s->next;
  rd_kafka_resp_err_t e = rd_kafka_assign(s->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) return rsrc_fail(t, rd_kafka_err2str(e));
  if (pipe2(s->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) return rsrc_fail(t, "cannot make a pipe");
  rd_kafka_queue_io_event_enable(s->q, s->pipefd[1], "1", 1);
  uv_poll_init(&t->w->loop, &s->poll, s->pipefd[0]);
  s->poll.data = s;
  s->poll_open = 1;
  uv_poll_start(&s->poll, UV_READABLE, rsrc_on_pipe);
  return 0;
}

/* Whether the record with header h was passed on already (a replay);
 * otherwise records it as the newest of its source. -1: bad header. */
static int already_seen(rsrc *s, const char *h, size_t len) {
  char buf[400];
  if (len >= sizeof(buf)) return -1;
  memcpy(buf, h, len);
  buf[len] = '\0';
  char *c3 = strrchr(buf, ':');
  if (c3 == NULL) return -1;
  *c3 = '\0';
  char *c2 = strrchr(buf, ':');
  if (c2 == NULL) return -1;
  char *e;
  long long off = strtoll(c2 + 1, &e, 10), n = strtoll(c3 + 1, NULL, 10);
  if (*e != '\0') return -1;
  seen *x = find_seen(s, buf, (size_t)(c2 - buf));
  if (x == NULL && (x = add_seen(s, buf, (size_t)(c2 - buf))) == NULL) return -1;
  if (off < x->off || (off == x->off && n <= x->n)) return 1;
  x->off = off;
  x->n = n;
  return 0;
}

static int rsrc_step(lua_State *L, cs_tinst *t) {
  rsrc *s = t->src;
  if (s == NULL || s->rk == NULL || t->src_done) return 0;
  cs_worker *w = t->w;
  int progress = 0;
  for (int k = 0; k < RECORDS_PER_STEP && !cs_tinst_blocked(t); k++) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(s->rk, 0);
    if (m == NULL) break;
    progress = 1;
    if (m->err) {
      int transient = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
                      m->err == RD_KAFKA_RESP_ERR__TRANSPORT ||
                      m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN;
      char why[600];
      snprintf(why, sizeof(why), "%s", rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      if (transient) continue;
      rsrc_fail(t, why);
      return 1;
    }
    if (m->offset < s->next && s->next >= 0) {
      rd_kafka_message_destroy(m);
      continue;
    }
    s->next = m->offset + 1;
    rd_kafka_headers_t *hs = NULL;
    const void *hv = NULL;
    size_t hl = 0;
    int dup = -1;
    if (rd_kafka_message_headers(m, &hs) == 0 &&
        rd_kafka_header_get_last(hs, SRC_HEADER, &hv, &hl) == 0)
      dup = already_seen(s, hv, hl);
    cs_slice v = {m->payload ? m->payload : "", m->len};
    if (dup < 0 || cs_codec_skip(v.data, v.len) != (long)v.len) {
      char why[300];
      snprintf(why, sizeof(why), "offset %lld: not a record written by cstream-lua's "
               "repartition sink", (long long)m->offset);
      rd_kafka_message_destroy(m);
      rsrc_fail(t, why);
      return 1;
    }
    if (dup) {
      rd_kafka_message_destroy(m);
      continue;
    }
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    int64_t before = w->cur_ts;
    w->cur_ts = tt == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE || ts <= 0 ? CS_NO_TS : ts;
    int rc = cs_emit_encoded(L, t->ops[0], v);
    w->cur_ts = before;
    rd_kafka_message_destroy(m);
    if (rc) return 1;
  }
  return progress;
}

static char *rsrc_position(cs_tinst *t) {
  rsrc *s = t->src;
  if (s == NULL || s->rk == NULL) return cs_strdup("none");
  cs_buf b = {0};
  cs_buf_printf(&b, "repart %lld", (long long)(s->next < 0 ? 0 : s->next));
  for (int i = 0; i < s->nseen; i++)
    cs_buf_printf(&b, ",%s=%lld.%lld", s->seen[i].src, (long long)s->seen[i].off,
                  (long long)s->seen[i].n);
  return b.data;
}

static void rsrc_cancel(lua_State *L, cs_tinst *t) {
  (void)L;
  (void)t;
}

static void rsrc_destroy(lua_State *L, cs_tinst *t) {
  (void)L;
  rsrc *s = t->src;
  if (s == NULL) return;
  if (s->poll_open) uv_close((uv_handle_t *)&s->poll, rsrc_poll_closed);
  for (int i = 0; i < 100 && s->poll_open && !s->poll_closed; i++)
    uv_run(&t->w->loop, UV_RUN_NOWAIT);
  if (s->q) {
    rd_kafka_queue_io_event_enable(s->q, -1, NULL, 0);
    rd_kafka_queue_destroy(s->q);
  }
  if (s->rk) rd_kafka_destroy_flags(s->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  for (int i = 0; i < s->nseen; i++) cs_free(s->seen[i].src);
  cs_free(s->seen);
  if (s->pipefd[0] >= 0) close(s->pipefd[0]);
  if (s->pipefd[1] >= 0) close(s->pipefd[1]);
  cs_free(s);
  t->src = NULL;
}

const cs_op_type cs_src_repartition = {
    .name = "source_repartition",
    .src_start = rsrc_start,
    .src_step = rsrc_step,
    .src_position = rsrc_position,
    .src_cancel = rsrc_cancel,
    .src_destroy = rsrc_destroy,
};
