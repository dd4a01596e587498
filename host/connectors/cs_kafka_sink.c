/*
 * cs_kafka_sink.c - kafka_sink: a librdkafka producer per subtask.
 *
 * A record's value is the string value(record) returns, or the record as
 * print renders it (a string as it is); its key is key(record) or none.
 *
 * at_least_once: records are produced as they come; at each checkpoint
 * barrier the producer is flushed (every record before the barrier is
 * acknowledged by the brokers) before the subtask acknowledges the
 * checkpoint, so a restore from it loses nothing (and may repeat).
 *
 * exactly_once: a two-phase commit over Kafka transactions, one
 * transactional id per subtask ("<prefix>-<subtask>").
 *   - Between barriers the records are kept in memory (read_committed
 *     readers would not see them before the commit anyway).
 *   - Pre-commit, at barrier N: begin a transaction, produce the records,
 *     add the offset N of the "marker" group "<prefix>-<subtask>" (topic,
 *     partition 0) to the transaction (send_offsets_to_transaction), and
 *     flush. The records of the transaction go into the sink's operator
 *     state of checkpoint N, with N.
 *   - Commit, when checkpoint N completes (notify_checkpoint_complete):
 *     commit the transaction, then commit the marker offset N again
 *     outside the transaction (see below).
 *   - A barrier that finds the previous transaction not committed yet
 *     (its checkpoint's completion not seen, or that checkpoint failed)
 *     adds the new records to that same transaction, which then commits
 *     with the newer checkpoint: a Kafka producer has one transaction
 *     open at a time, and committing it before its checkpoint completes
 *     could duplicate on a restore.
 *   - Recovery, on a restore from checkpoint N: initialising the producer
 *     of a transactional id fences the previous run's producer of that id
 *     and aborts its open transaction (records after checkpoint N, which
 *     the sources replay). A transaction that checkpoint N holds in state
 *     was pre-committed; whether it committed is what the marker group's
 *     committed offset says (>= N: it did). If it did not, its records are
 *     sent again in a new transaction with the marker and committed. At
 *     another parallelism every subtask gets every old subtask's pending
 *     transaction (union list state) and handles those of old subtasks j
 *     with j % parallelism == its index; it also fences the transactional
 *     ids of old subtasks that no longer exist.
 *   - End of input (close): the open transaction and the records since
 *     the last barrier are committed. A failed job aborts its open
 *     transaction (destroy).
 * On a real broker the marker is committed atomically with the
 * transaction, so the check is exact. librdkafka's mock cluster keeps no
 * transactional offsets and shows aborted records to read_committed
 * readers; the plain commit of the marker after the transaction makes the
 * recovery work there too, with one window (a kill between the commit of
 * the transaction and that of the marker) in which the mock would see a
 * duplicate that a real broker would not.
 *
 * Every record of a transaction carries the header cstream.txn =
 * "<transactional id>:<pid>:<sequence>", and with CSTREAM_VERBOSE set the
 * sink reports each transaction's begin, commit and abort on stderr: the
 * specs check the protocol through them.
 */
#include <lauxlib.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/api/cs_api.h"
#include "host/connectors/cs_kafka_int.h"
#include "host/lua/cs_format.h"
#include "state/cs_codec.h"

#define TXN_HEADER "cstream.txn"

typedef struct ksink {
  cs_kafka_health h; /* first: the client's opaque */
  cs_opi *op;
  rd_kafka_t *rk;
  rd_kafka_t *marker; /* consumer of the marker group (exactly once) */
  char *bootstrap, *topic, *prefix, *txn_id, *marker_group;
  int eo;
  long long timeout, txn_timeout;
  cs_buf buf;     /* exactly once: records since the last barrier */
  size_t nbuf;
  cs_buf open;    /* records of the pre-committed transaction */
  size_t nopen;
  int txn_open;
  int64_t txn_ckpt; /* the checkpoint that pre-committed it, 0: none */
  char label[300];
  int state_sid;
  int failed_delivery;
  char delivery_err[600];
  int64_t produced; /* records produced (at least once) */
  cs_buf kbuf, vbuf; /* rendering scratch */
} ksink;

static int verbose(void) {
  const char *v = getenv("CSTREAM_VERBOSE");
  return v && *v && strcmp(v, "0") != 0;
}

static int sink_fail(ksink *s, const char *fmt, const char *what) {
  char msg[1400];
  snprintf(msg, sizeof(msg), "kafka_sink: topic '%s' on %s: %s%s", s->topic,
           s->bootstrap ? s->bootstrap : "?", fmt, what ? what : "");
  return cs_opi_fail(s->op->w->L, s->op, 0, msg);
}

static int err_fail(ksink *s, const char *doing, rd_kafka_error_t *e) {
  char what[700];
  snprintf(what, sizeof(what), "%s: %s", doing, rd_kafka_error_string(e));
  rd_kafka_error_destroy(e);
  return sink_fail(s, what, NULL);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  ksink *s = opaque;
  if (m->err && !s->failed_delivery) {
    s->failed_delivery = 1;
    snprintf(s->delivery_err, sizeof(s->delivery_err),
             "a record could not be delivered to partition %d: %s", (int)m->partition,
             rd_kafka_err2str(m->err));
  }
}

/* ------------------------------------------------------------ records */

/* Appends one record (key, value may be NULL) to b:
 * [flags][timestamp][klen][key][vlen][value]. */
static int rec_append(cs_buf *b, int64_t ts, const char *k, size_t kl, const char *v,
                      size_t vl, int has_val) {
  unsigned char hdr = (unsigned char)((k ? 1 : 0) | (has_val ? 2 : 0));
  uint32_t kl32 = (uint32_t)kl, vl32 = (uint32_t)vl;
  if (cs_buf_append(b, (char *)&hdr, 1) || cs_buf_append(b, (char *)&ts, 8) ||
      cs_buf_append(b, (char *)&kl32, 4) ||
      cs_buf_append(b, k ? k : "", kl) || cs_buf_append(b, (char *)&vl32, 4) ||
      cs_buf_append(b, v ? v : "", vl))
    return CS_ENOMEM;
  return 0;
}

/* Reads the record at *off of b; 1 with the fields set, 0 at the end. */
static int rec_next(const char *b, size_t len, size_t *off, int64_t *ts, const char **k,
                    size_t *kl, const char **v, size_t *vl) {
  if (*off + 17 > len) return 0;
  const char *p = b + *off;
  unsigned char hdr = (unsigned char)p[0];
  uint32_t kl32, vl32;
  memcpy(ts, p + 1, 8);
  memcpy(&kl32, p + 9, 4);
  *k = hdr & 1 ? p + 13 : NULL;
  *kl = kl32;
  memcpy(&vl32, p + 13 + kl32, 4);
  *v = hdr & 2 ? p + 17 + kl32 : NULL;
  *vl = vl32;
  *off += 17 + kl32 + vl32;
  return 1;
}

/* Produces one record with the record's timestamp (CS_NO_TS: the time of
 * sending), waiting while librdkafka's queue is full. */
static int produce(ksink *s, int64_t ts, const char *k, size_t kl, const char *v,
                   size_t vl) {
  rd_kafka_resp_err_t e;
  int64_t kts = ts == CS_NO_TS || ts < 0 ? 0 : ts;
  for (;;) {
    if (s->eo)
      e = rd_kafka_producev(s->rk, RD_KAFKA_V_TOPIC(s->topic),
                            RD_KAFKA_V_KEY(k, k ? kl : 0), RD_KAFKA_V_VALUE((void *)v, v ? vl : 0),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(kts),
                            RD_KAFKA_V_HEADER(TXN_HEADER, s->label, -1), RD_KAFKA_V_END);
    else
      e = rd_kafka_producev(s->rk, RD_KAFKA_V_TOPIC(s->topic),
                            RD_KAFKA_V_KEY(k, k ? kl : 0), RD_KAFKA_V_VALUE((void *)v, v ? vl : 0),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(kts),
                            RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
    rd_kafka_poll(s->rk, 10);
  }
  if (e) return sink_fail(s, "cannot produce a record: ", rd_kafka_err2str(e));
  if ((++s->produced & 255) == 0) rd_kafka_poll(s->rk, 0);
  return 0;
}

/* Calls self[what](record) when the job gave that function: appends the
 * string it returns to out (*is_nil when nil), or renders the record as
 * print does (value) or gives no key. 0, or -1 (failed).  [-0, +0] */
static int call_render(lua_State *L, cs_opi *op, int rec, const char *what,
                       cs_buf *out, int *is_nil) {
  *is_nil = 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->self_ref);
  lua_getfield(L, -1, what);
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    if (strcmp(what, "key") == 0) return 0;
    *is_nil = 0;
    return cs_format_value(L, rec, out) ? cs_opi_fail(L, op, rec, "out of memory") : 0;
  }
  lua_pushvalue(L, rec);
  if (cs_api_call(L, op, 1, 1, rec)) return -1;
  *is_nil = lua_isnil(L, -1);
  if (!*is_nil && !lua_isstring(L, -1)) {
    char msg[200];
    snprintf(msg, sizeof(msg), "kafka_sink: %s(record) returned %s, not a string",
             what, luaL_typename(L, -1));
    lua_pop(L, 1);
    return cs_opi_fail(L, op, rec, msg);
  }
  size_t n = 0;
  const char *p = *is_nil ? "" : lua_tolstring(L, -1, &n);
  int rc = cs_buf_append(out, p, n);
  lua_pop(L, 1);
  return rc ? cs_opi_fail(L, op, rec, "out of memory") : 0;
}

static int kafka_sink_process(lua_State *L, cs_opi *op, int input) {
  (void)input;
  ksink *s = op->data;
  int rec = lua_gettop(L);
  int knil = 1, vnil = 0;
  s->kbuf.len = s->vbuf.len = 0;
  int rc = call_render(L, op, rec, "key", &s->kbuf, &knil);
  if (rc == 0) rc = call_render(L, op, rec, "value", &s->vbuf, &vnil);
  lua_settop(L, rec - 1);
  if (rc) return -1;
  const char *k = knil ? NULL : (s->kbuf.data ? s->kbuf.data : "");
  const char *v = vnil ? NULL : (s->vbuf.data ? s->vbuf.data : "");
  if (s->eo) {
    if (rec_append(&s->buf, op->w->cur_ts, k, s->kbuf.len, v, s->vbuf.len, !vnil))
      return cs_opi_fail(L, op, 0, "out of memory");
    s->nbuf++;
    return 0;
  }
  return produce(s, op->w->cur_ts, k, s->kbuf.len, v, s->vbuf.len);
}

/* Waits until every record produced is acknowledged. 0 or -1 (failed). */
static int flush_all(ksink *s) {
  rd_kafka_resp_err_t e = rd_kafka_flush(s->rk, (int)s->timeout);
  if (s->failed_delivery) return sink_fail(s, s->delivery_err, NULL);
  if (e) return sink_fail(s, "records not acknowledged within kafka.connect-timeout: ",
                          rd_kafka_err2str(e));
  return 0;
}

/* --------------------------------------------------------- transactions */

static void set_marker(rd_kafka_topic_partition_list_t *l, const char *topic,
                       int64_t id) {
  rd_kafka_topic_partition_list_add(l, topic, 0)->offset = id;
}

/* Produces the records of b in the open transaction with the marker
 * offset id of group (id 0: no marker). */
static int txn_send(ksink *s, const char *b, size_t len, const char *group, int64_t id) {
  const char *k, *v;
  size_t kl, vl, off = 0;
  int64_t ts;
  while (rec_next(b, len, &off, &ts, &k, &kl, &v, &vl))
    if (produce(s, ts, k, kl, v, vl)) return -1;
  if (id > 0) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    set_marker(l, s->topic, id);
    rd_kafka_consumer_group_metadata_t *g = rd_kafka_consumer_group_metadata_new(group);
    rd_kafka_error_t *e = rd_kafka_send_offsets_to_transaction(s->rk, l, g, (int)s->timeout);
    rd_kafka_consumer_group_metadata_destroy(g);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) return err_fail(s, "cannot add the checkpoint marker to the transaction", e);
  }
  return flush_all(s);
}

static int txn_begin(ksink *s) {
  rd_kafka_error_t *e = rd_kafka_begin_transaction(s->rk);
  if (e) return err_fail(s, "cannot begin a transaction", e);
  static atomic_long seq; /* labels stay unique across restarts */
  snprintf(s->label, sizeof(s->label), "%s:%d:%ld", s->txn_id, (int)getpid(),
           atomic_fetch_add(&seq, 1) + 1);
  s->txn_open = 1;
  if (verbose()) fprintf(stderr, "cstream-lua: kafka_sink: transaction %s begun\n", s->label);
  return 0;
}

/* Commits the marker offset id of group outside a transaction (for
 * brokers that keep no transactional offsets: the mock). */
static void marker_commit(ksink *s, rd_kafka_t *c, int64_t id) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  set_marker(l, s->topic, id);
  rd_kafka_commit(c, l, 0);
  rd_kafka_topic_partition_list_destroy(l);
}

static int txn_commit(ksink *s, const char *why, size_t nrec) {
  rd_kafka_error_t *e = rd_kafka_commit_transaction(s->rk, (int)s->timeout);
  if (e) return err_fail(s, "cannot commit the transaction", e);
  s->txn_open = 0;
  if (verbose())
    fprintf(stderr, "cstream-lua: kafka_sink: transaction %s committed (%s, %zu "
            "records)\n", s->label, why, nrec);
  return 0;
}

/* Writes the pre-committed transaction (or none) as the sink's operator
 * state: one item [subtask][checkpoint][records]. */
static int save_pending(lua_State *L, ksink *s) {
  cs_backend *be = cs_opi_backend(s->op);
  if (be == NULL) return -1;
  cs_buf blob = {0}, enc = {0};
  char err[200];
  int32_t sub = s->op->subtask;
  int64_t id = s->txn_open ? s->txn_ckpt : 0;
  int rc = cs_buf_append(&blob, (char *)&sub, 4) || cs_buf_append(&blob, (char *)&id, 8);
  if (rc == 0 && s->txn_open) rc = cs_buf_append(&blob, s->open.data ? s->open.data : "",
                                                 s->open.len);
  if (rc == 0) {
    lua_pushlstring(L, blob.data ? blob.data : "", blob.len);
    rc = cs_codec_encode(L, -1, &enc, err, sizeof(err));
    lua_pop(L, 1);
  }
  cs_slice key = {"", 0}, v = {enc.data, enc.len};
  if (rc == 0) rc = be->ops->put(be, s->state_sid, CS_OPSTATE_KEY_GROUP, key, NULL, v);
  cs_buf_free(&blob);
  cs_buf_free(&enc);
  return rc ? sink_fail(s, "cannot keep the pending transaction in state: ",
                        cs_strerror(rc)) : 0;
}

/* The barrier of checkpoint trigger_seen: pre-commit (exactly once) or
 * flush (at least once). */
static int kafka_sink_snapshot(lua_State *L, cs_opi *op) {
  ksink *s = op->data;
  if (s == NULL || s->rk == NULL || op->w->reloading) return 0;
  if (!s->eo) return flush_all(s);
  int64_t id = op->w->trigger_seen;
  if (s->nbuf > 0 || s->txn_open) {
    if (!s->txn_open && txn_begin(s)) return -1;
    if (txn_send(s, s->buf.data, s->buf.len, s->marker_group, id)) return -1;
    if (cs_buf_append(&s->open, s->buf.data ? s->buf.data : "", s->buf.len))
      return sink_fail(s, "out of memory", NULL);
    s->nopen += s->nbuf;
    s->buf.len = 0;
    s->nbuf = 0;
    s->txn_ckpt = id;
    if (verbose())
      fprintf(stderr, "cstream-lua: kafka_sink: transaction %s pre-committed "
              "(checkpoint %lld, %zu records)\n", s->label, (long long)id, s->nopen);
  }
  return save_pending(L, s);
}

static int kafka_sink_notify(lua_State *L, cs_opi *op, int64_t id) {
  (void)L;
  ksink *s = op->data;
  if (s == NULL || !s->eo || !s->txn_open || s->txn_ckpt == 0 || s->txn_ckpt > id)
    return 0;
  /* Fault injection for the specs: CSTREAM_KAFKA_TEST_FAULT = "kill:N"
   * or "fail:N" kills the process (SIGKILL) or fails the job between the
   * pre-commit and the commit of the process's N-th transaction. */
  static atomic_int commits;
  const char *fault = getenv("CSTREAM_KAFKA_TEST_FAULT");
  if (fault && strlen(fault) > 5 && atoi(fault + 5) == atomic_fetch_add(&commits, 1) + 1) {
    if (strncmp(fault, "kill:", 5) == 0) raise(SIGKILL);
    return sink_fail(s, "injected failure before the commit (CSTREAM_KAFKA_TEST_FAULT)",
                     NULL);
  }
  char why[64];
  snprintf(why, sizeof(why), "checkpoint %lld", (long long)s->txn_ckpt);
  if (txn_commit(s, why, s->nopen)) return -1;
  marker_commit(s, s->marker, s->txn_ckpt);
  s->open.len = 0;
  s->nopen = 0;
  s->txn_ckpt = 0;
  return 0;
}

/* ------------------------------------------------------------ recovery */

/* The marker group's committed offset, or -1. */
static int64_t marker_offset(ksink *s, rd_kafka_t *c) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  set_marker(l, s->topic, 0);
  int64_t off = -1;
  if (rd_kafka_committed(c, l, (int)s->timeout) == 0 && l->elems[0].err == 0)
    off = l->elems[0].offset;
  rd_kafka_topic_partition_list_destroy(l);
  return off;
}

static rd_kafka_t *marker_client(ksink *s, const char *group, char *err, size_t errlen) {
  cs_kafka_props force = {0};
  rd_kafka_t *c = NULL;
  if (cs__kafka_props_add(&force, "group.id", group) == 0 &&
      cs__kafka_props_add(&force, "enable.auto.commit", "false") == 0)
    c = cs__kafka_new(RD_KAFKA_CONSUMER, s->bootstrap, NULL, NULL, &force, NULL, NULL,
                      err, errlen);
  cs__kafka_props_free(&force);
  return c;
}

/* Commits one old subtask's pending transaction unless it committed. */
static int recover_item(ksink *s, const char *blob, size_t len) {
  int32_t sub;
  int64_t id;
  if (len < 12) return 0;
  memcpy(&sub, blob, 4);
  memcpy(&id, blob + 4, 8);
  if (id == 0 || len == 12) return 0;
  char group[400], err[600];
  snprintf(group, sizeof(group), "%s-%d", s->prefix, (int)sub);
  rd_kafka_t *c = marker_client(s, group, err, sizeof(err));
  if (c == NULL) return sink_fail(s, err, NULL);
  int64_t done = marker_offset(s, c);
  int rc = 0;
  size_t n = 0, off = 12;
  const char *k, *v;
  size_t kl, vl;
  int64_t ts;
  while (rec_next(blob, len, &off, &ts, &k, &kl, &v, &vl)) n++;
  if (done >= id) {
    if (verbose())
      fprintf(stderr, "cstream-lua: kafka_sink: the transaction of %s-%d for checkpoint "
              "%lld had committed\n", s->prefix, (int)sub, (long long)id);
  } else {
    rc = txn_begin(s) || txn_send(s, blob + 12, len - 12, group, id);
    char why[160];
    snprintf(why, sizeof(why), "recovery of %s-%d for checkpoint %lld", s->prefix,
             (int)sub, (long long)id);
    if (rc == 0) rc = txn_commit(s, why, n);
    if (rc == 0) marker_commit(s, c, id);
  }
  rd_kafka_destroy(c);
  return rc ? -1 : 0;
}

/* Initialising a producer with an old subtask's transactional id fences
 * that id's last producer and aborts its open transaction. */
static int fence_id(ksink *s, int sub, const cs_kafka_props *force_base) {
  char id[400], err[600];
  snprintf(id, sizeof(id), "%s-%d", s->prefix, sub);
  cs_kafka_props force = {0};
  for (int i = 0; i < force_base->n; i++)
    cs__kafka_props_add(&force, force_base->kv[2 * i], force_base->kv[2 * i + 1]);
  cs__kafka_props_add(&force, "transactional.id", id);
  rd_kafka_t *p = cs__kafka_new(RD_KAFKA_PRODUCER, s->bootstrap, NULL, NULL, &force,
                                NULL, NULL, err, sizeof(err));
  cs__kafka_props_free(&force);
  if (p == NULL) return sink_fail(s, err, NULL);
  rd_kafka_error_t *e = rd_kafka_init_transactions(p, (int)s->timeout);
  rd_kafka_destroy(p);
  if (e) return err_fail(s, "cannot fence an old transactional id", e);
  return 0;
}

/* Handles the pending transactions a restore brought back. */
static int recover(lua_State *L, ksink *s, const cs_kafka_props *force) {
  cs_opi *op = s->op;
  cs_ckpt *ck = op->w->job->restore;
  int p = op->node->parallelism;
  int oldp = ck ? cs_ckpt_op_parallelism(ck, op->node->id) : 0;
  for (int j = p; j < oldp; j++)
    if (j % p == op->subtask && fence_id(s, j, force)) return -1;
  cs_backend *be = cs_opi_backend(op);
  if (be == NULL) return -1;
  cs_slice key = {"", 0}, val;
  if (be->ops->get(be, s->state_sid, CS_OPSTATE_KEY_GROUP, key, NULL, &val) != 0)
    return 0;
  cs_buf items = {0};
  if (cs_buf_append(&items, val.data, val.len)) return sink_fail(s, "out of memory", NULL);
  int rc = 0;
  for (size_t off = 0; rc == 0 && off < items.len;) {
    size_t used = 0;
    if (cs_codec_decode(L, items.data + off, items.len - off, &used) != 0 || used == 0) {
      rc = sink_fail(s, "the checkpoint's pending transactions are corrupt", NULL);
      break;
    }
    off += used;
    size_t len = 0;
    const char *blob = lua_tolstring(L, -1, &len);
    int32_t sub = -1;
    if (blob && len >= 4) memcpy(&sub, blob, 4);
    if (blob && sub >= 0 && sub % p == op->subtask) rc = recover_item(s, blob, len);
    lua_pop(L, 1);
  }
  cs_buf_free(&items);
  return rc;
}

/* ---------------------------------------------------------- lifecycle */

/* Reads the options and creates the producer (and, for exactly once,
 * initialises its transactions and recovers pending ones). */
static int sink_start(lua_State *L, ksink *s, int kidx) {
  cs_opi *op = s->op;
  cs_job *job = op->w->job;
  char err[1200];
  s->timeout = job->cfg->kafka_connect_timeout_ms;
  s->txn_timeout = job->cfg->kafka_txn_timeout_ms;
  lua_getfield(L, kidx, "topic");
  s->topic = cs_strdup(lua_tostring(L, -1));
  lua_getfield(L, kidx, "delivery");
  s->eo = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "exactly_once") == 0;
  lua_getfield(L, kidx, "transactional_id_prefix");
  char prefix[300];
  snprintf(prefix, sizeof(prefix), "%s", lua_isstring(L, -1) ? lua_tostring(L, -1)
                                                             : job->name);
  lua_pop(L, 3);
  s->prefix = cs_strdup(prefix);
  s->bootstrap = cs__kafka_bootstrap(L, kidx, job);
  if (s->bootstrap == NULL)
    return sink_fail(s, "no brokers: give bootstrap_servers or set "
                        "kafka.bootstrap-servers", NULL);
  cs_buf b = {0};
  cs_buf_printf(&b, "%s-%d", prefix, op->subtask);
  s->txn_id = s->marker_group = NULL;
  s->txn_id = b.data;
  s->marker_group = cs_strdup(b.data);
  cs_kafka_props props = {0}, force = {0};
  char tmo[32];
  snprintf(tmo, sizeof(tmo), "%lld", s->txn_timeout);
  lua_getfield(L, kidx, "properties");
  int rc = cs__kafka_props_read(L, -1, &props);
  lua_pop(L, 1);
  if (rc == 0 && s->eo) rc = cs__kafka_props_add(&force, "transaction.timeout.ms", tmo);
  if (rc == 0 && s->eo) {
    cs_kafka_props with_id = {0};
    for (int i = 0; rc == 0 && i < force.n; i++)
      rc = cs__kafka_props_add(&with_id, force.kv[2 * i], force.kv[2 * i + 1]);
    if (rc == 0) rc = cs__kafka_props_add(&with_id, "transactional.id", s->txn_id);
    if (rc == 0)
      s->rk = cs__kafka_new(RD_KAFKA_PRODUCER, s->bootstrap, NULL, &props, &with_id,
                            &s->h, on_delivery, err, sizeof(err));
    cs__kafka_props_free(&with_id);
  } else if (rc == 0) {
    s->rk = cs__kafka_new(RD_KAFKA_PRODUCER, s->bootstrap, NULL, &props, NULL, &s->h,
                          on_delivery, err, sizeof(err));
  }
  cs__kafka_props_free(&props);
  if (rc == 0 && s->rk == NULL) rc = sink_fail(s, err, NULL);
  int n = 0;
  if (rc == 0 && cs__kafka_topic_partitions(s->rk, s->bootstrap, s->topic, s->timeout,
                                            &n, err, sizeof(err)) != 0) {
    char msg[1300];
    snprintf(msg, sizeof(msg), "kafka_sink: %s", err);
    rc = cs_opi_fail(L, op, 0, msg);
  }
  if (rc == 0 && s->eo) {
    rd_kafka_error_t *e = rd_kafka_init_transactions(s->rk, (int)s->timeout);
    if (e) rc = err_fail(s, "cannot initialise transactions", e);
    if (rc == 0 && (s->marker = marker_client(s, s->marker_group, err, sizeof(err))) == NULL)
      rc = sink_fail(s, err, NULL);
    if (rc == 0 && op->restored) rc = recover(L, s, &force);
  }
  cs__kafka_props_free(&force);
  return rc ? -1 : 0;
}

/* The key and value functions are fields of the node's function table
 * (self), so a reload's new code and a rollback come with the runtime's
 * handling of rich functions. */
static int kafka_sink_bind(lua_State *L, cs_opi *op, int env_idx) {
  if (cs_api_bind(L, op, env_idx)) return -1;
  if (op->data) return 0; /* a reload */
  ksink *s = cs_calloc(1, sizeof(*s));
  if (s == NULL) return cs_opi_fail(L, op, 0, "out of memory");
  s->op = op;
  op->data = s;
  return 0;
}

static int kafka_sink_open(lua_State *L, cs_opi *op) {
  ksink *s = op->data;
  if (op->w->reloading || s->rk) return 0;
  cs_backend *be = cs_opi_backend(op);
  if (be == NULL) return -1;
  cs_buf name = {0};
  cs_buf_printf(&name, "%s/#uop/kafka_sink", op->node->id);
  s->state_sid = name.data ? be->ops->register_state(be, name.data, CS_STATE_LIST) : CS_ENOMEM;
  cs_buf_free(&name);
  if (s->state_sid < 0) return sink_fail(s, "cannot register the sink's state", NULL);
  cs__kafka_push_options(L, op);
  int rc = sink_start(L, s, lua_gettop(L));
  lua_pop(L, 1);
  return rc;
}

/* End of input: everything not committed yet is committed now. (A hot
 * reload closes the old code's instances too: the sink goes on then.) */
static int kafka_sink_close(lua_State *L, cs_opi *op) {
  (void)L;
  ksink *s = op->data;
  if (s == NULL || s->rk == NULL || op->w->reloading) return 0;
  if (!s->eo) return flush_all(s);
  if (s->nbuf == 0 && !s->txn_open) return 0;
  if (!s->txn_open && txn_begin(s)) return -1;
  if (txn_send(s, s->buf.data, s->buf.len, s->marker_group, 0)) return -1;
  if (txn_commit(s, "end of input", s->nopen + s->nbuf)) return -1;
  if (s->txn_ckpt) marker_commit(s, s->marker, s->txn_ckpt);
  s->buf.len = s->open.len = 0;
  s->nbuf = s->nopen = 0;
  s->txn_ckpt = 0;
  return 0;
}

/* The job is ending: a transaction still open (the job failed) is
 * aborted; the clients go. */
static void kafka_sink_destroy(cs_opi *op) {
  ksink *s = op->data;
  if (s == NULL) return;
  if (s->rk && s->eo && s->txn_open) {
    rd_kafka_error_t *e = rd_kafka_abort_transaction(s->rk, (int)s->timeout);
    if (verbose() || e)
      fprintf(stderr, "cstream-lua: kafka_sink: transaction %s %s%s\n", s->label,
              e ? "could not be aborted: " : "aborted", e ? rd_kafka_error_string(e) : "");
    if (e) rd_kafka_error_destroy(e);
  }
  if (s->rk && !s->eo && atomic_load(&op->w->job->failed))
    rd_kafka_purge(s->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  if (s->rk) rd_kafka_destroy(s->rk);
  if (s->marker) rd_kafka_destroy(s->marker);
  cs_free(s->bootstrap);
  cs_free(s->topic);
  cs_free(s->prefix);
  cs_free(s->txn_id);
  cs_free(s->marker_group);
  cs_buf_free(&s->buf);
  cs_buf_free(&s->open);
  cs_buf_free(&s->kbuf);
  cs_buf_free(&s->vbuf);
  cs_free(s);
  op->data = NULL;
}

const cs_op_type cs_sink_kafka = {
    .name = "sink_kafka",
    .bind = kafka_sink_bind,
    .open = kafka_sink_open,
    .snapshot_state = kafka_sink_snapshot,
    .close = kafka_sink_close,
    .release = cs_api_release,
    .process = kafka_sink_process,
    .destroy = kafka_sink_destroy,
    .notify_checkpoint_complete = kafka_sink_notify,
};
