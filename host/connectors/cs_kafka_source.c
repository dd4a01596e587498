/*
 * cs_kafka_source.c - kafka_source: a librdkafka consumer per subtask.
 *
 * Partitions are assigned by the job, not by the group protocol (as
 * Flink's KafkaSource does): the partitions of the topics, in topic order
 * then partition order, are numbered k = 0, 1, ...; subtask k % parallelism
 * reads partition k, through rd_kafka_assign. The checkpointed position is
 * the next offset of each assigned partition ("kafka t:0:17,t:2:5"); on a
 * restore every old subtask's positions are read and dealt out again, so
 * a restore at another parallelism reads every partition from where the
 * checkpoint left it. Partitions the checkpoint does not know (added
 * since) start from starting_offsets.
 *
 * The consumer's queue signals a pipe when it becomes non-empty; a libuv
 * poll on the pipe wakes the worker, so an idle source costs nothing. A
 * slow timer also wakes it to notice brokers that stay down for longer
 * than kafka.connect-timeout: the job then fails (and restarts from its
 * checkpoint as its restart strategy allows) instead of hanging.
 *
 * After each completed checkpoint the offsets it holds are committed to
 * the group (group_id), for monitoring only: the position that counts is
 * the checkpoint's. A bounded source (bounded = true) stops at the end
 * offsets the partitions had when it started, as Flink's
 * setBounded(OffsetsInitializer.latest()).
 *
 * With a watermark_strategy (Flink's fromSource(source, strategy)), the
 * strategy runs per partition: each keeps the largest timestamp it read,
 * and the subtask's watermark is the minimum over its partitions of
 * max - bound - 1, leaving out partitions read to their end (bounded) and,
 * with with_idleness, partitions without a record for that long. A
 * partition that has given no record yet holds the watermark back, as in
 * Flink. Watermarks are not checkpointed: after a restore they start
 * again from the records read.
 */
#include <fcntl.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/api/cs_api.h"
#include "host/connectors/cs_kafka_int.h"

#define RECORDS_PER_STEP 512
#define MAX_COMMITS 8

typedef struct kpart {
  char *topic; /* owned */
  int32_t partition;
  int64_t next; /* next offset, or a logical RD_KAFKA_OFFSET_* before any */
  int64_t stop; /* bounded: the end offset to stop at; -1 when unbounded */
  int done;
  int64_t max_ts;    /* watermarks: the largest timestamp read, or CS_NO_TS */
  int64_t last_seen; /* watermarks: wall-clock ms of its last record */
} kpart;

typedef struct ksrc {
  cs_tinst *t;
  cs_opi *op;
  rd_kafka_t *rk;
  rd_kafka_queue_t *q;
  cs_kafka_health h;
  char *bootstrap;
  int json;    /* value_format = "json" */
  int json_ref; /* cjson.decode */
  int bounded;
  /* watermark_strategy: wm_mode 0 none given, 1 timestamps only
   * (no_watermarks), 2 bounded out-of-orderness */
  int wm_mode;
  int64_t wm_bound, wm_idleness;
  int extractor_ref; /* the strategy's timestamp extractor, or LUA_NOREF */
  kpart *parts;
  int nparts, ndone;
  int pipefd[2];
  uv_poll_t poll;
  int poll_open, poll_closed;
  uv_timer_t timer;
  int timer_open, timer_closed;
  struct kcommit {
    int64_t id;
    rd_kafka_topic_partition_list_t *offsets;
  } commits[MAX_COMMITS];
  int ncommits;
} ksrc;

static int kfail(cs_tinst *t, const char *msg) {
  t->src_done = 1;
  return cs_opi_fail(t->w->L, t->ops[0], 0, msg);
}

/* ------------------------------------------------------------ wake-ups */

static void on_pipe(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  ksrc *s = h->data;
  cs_worker_kick_from_pipe(s->t->w, s->pipefd[0]);
}

static void on_timer(uv_timer_t *h) {
  ksrc *s = h->data;
  cs_worker_kick(s->t->w);
}

static void poll_closed(uv_handle_t *h) {
  ksrc *s = h->data;
  s->poll_closed = 1;
}

static void timer_closed(uv_handle_t *h) {
  ksrc *s = h->data;
  s->timer_closed = 1;
}

/* --------------------------------------------------------- assignment */

/* The offset the checkpoint being restored holds for (topic, partition):
 * 1 with *off set, 0 when it has none, -1 when a position is malformed. */
static int restored_offset(const cs_tinst *t, const char *topic, int32_t p,
                           int64_t *off) {
  cs_ckpt *ck = t->w->job->restore;
  const char *id = t->ops[0]->node->id;
  int oldp = ck ? cs_ckpt_op_parallelism(ck, id) : 0;
  size_t tl = strlen(topic);
  for (int j = 0; j < oldp; j++) {
    const cs_ckpt_part *part = cs_ckpt_find(ck, id, j);
    if (part == NULL || part->source == NULL) continue;
    const char *s = part->source;
    if (strncmp(s, "kafka", 5) != 0) return -1;
    s += 5;
    while (*s == ' ' || *s == ',') {
      s++;
      const char *colon = strchr(s, ':');
      if (colon == NULL) return -1;
      char *e;
      long pp = strtol(colon + 1, &e, 10);
      if (*e != ':') return -1;
      long long o = strtoll(e + 1, &e, 10);
      if ((size_t)(colon - s) == tl && strncmp(s, topic, tl) == 0 && pp == p) {
        *off = o;
        return 1;
      }
      s = e;
    }
    if (*s != '\0') return -1;
  }
  return 0;
}

/* The starting offset of partition p from starting_offsets (at kidx). */
static int64_t start_offset(lua_State *L, int kidx, int32_t p) {
  int64_t off = RD_KAFKA_OFFSET_BEGINNING;
  int ty = lua_getfield(L, kidx, "starting_offsets");
  if (ty == LUA_TSTRING) {
    const char *so = lua_tostring(L, -1);
    off = strcmp(so, "latest") == 0      ? RD_KAFKA_OFFSET_END
          : strcmp(so, "committed") == 0 ? RD_KAFKA_OFFSET_STORED
                                         : RD_KAFKA_OFFSET_BEGINNING;
  } else if (ty == LUA_TTABLE) {
    if (lua_geti(L, -1, p) == LUA_TNUMBER) off = lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return off;
}

/* Adds the partitions of every topic this subtask reads to s->parts. */
static int assign_partitions(lua_State *L, int kidx, ksrc *s, long long timeout,
                             char *err, size_t errlen) {
  cs_tinst *t = s->t;
  int par = t->ops[0]->node->parallelism, k = 0;
  lua_getfield(L, kidx, "topics");
  int ntopics = (int)luaL_len(L, -1);
  for (int i = 1; i <= ntopics; i++) {
    lua_geti(L, -1, i);
    const char *topic = lua_tostring(L, -1);
    int n = 0;
    int rc = cs__kafka_topic_partitions(s->rk, s->bootstrap, topic, timeout, &n, err,
                                        errlen);
    /* In a group the member's share of the partitions is dealt out over
     * this process's subtasks; each starts from the group's committed
     * offset (the checkpoint's source positions stay with its process). */
    int32_t *gp = NULL;
    int ngp = 0;
    cs_job *job = t->w->job;
    if (rc == 0 && job->group) rc = cs__group_source_parts(job, topic, &gp, &ngp);
    if (job->group) n = ngp;
    for (int i = 0; rc == 0 && i < n; i++, k++) {
      int p = job->group ? gp[i] : i;
      if (k % par != t->subtask) continue;
      kpart *np = cs_realloc(s->parts, sizeof(*np) * (size_t)(s->nparts + 1));
      if (np == NULL) rc = CS_ENOMEM;
      if (rc) break;
      s->parts = np;
      kpart *kp = &np[s->nparts++];
      memset(kp, 0, sizeof(*kp));
      kp->topic = cs_strdup(topic);
      kp->partition = p;
      kp->stop = -1;
      kp->max_ts = CS_NO_TS;
      kp->last_seen = cs_now_ms();
      int r = job->group ? 0 : restored_offset(t, topic, p, &kp->next);
      if (r < 0) {
        snprintf(err, errlen, "the checkpoint holds a malformed position for '%s'",
                 t->ops[0]->node->id);
        rc = CS_EDECODE;
      } else if (r == 0) {
        kp->next = job->group ? RD_KAFKA_OFFSET_STORED : start_offset(L, kidx, p);
      }
    }
    cs_free(gp);
    lua_pop(L, 1);
    if (rc) {
      lua_pop(L, 1);
      return rc;
    }
  }
  lua_pop(L, 1);
  return 0;
}

/* Bounded: the end offset of every partition now is where it stops. */
static int bound_partitions(ksrc *s, long long timeout, char *err, size_t errlen) {
  for (int i = 0; i < s->nparts; i++) {
    kpart *kp = &s->parts[i];
    int64_t lo, hi;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
        s->rk, kp->topic, kp->partition, &lo, &hi, (int)timeout);
    if (e) {
      snprintf(err, errlen, "cannot read the end offsets of topic '%s' partition %d "
               "on %s: %s", kp->topic, (int)kp->partition, s->bootstrap,
               rd_kafka_err2str(e));
      return CS_EIO;
    }
    kp->stop = hi;
    if (kp->next == RD_KAFKA_OFFSET_END || (kp->next >= 0 && kp->next >= hi) ||
        hi <= lo) {
      kp->done = 1;
      s->ndone++;
    }
  }
  return 0;
}

/* The watermark strategy of the options at kidx (without its extractor,
 * which bind_extractor looks up in each Lua state the worker runs). */
static void read_strategy(lua_State *L, int kidx, ksrc *s) {
  lua_getfield(L, kidx, "watermarks");
  const char *m = lua_tostring(L, -1);
  s->wm_mode = m == NULL ? 0 : strcmp(m, "none") == 0 ? 1 : 2;
  lua_getfield(L, kidx, "bound");
  s->wm_bound = lua_tointeger(L, -1);
  lua_getfield(L, kidx, "idleness");
  s->wm_idleness = lua_tointeger(L, -1);
  lua_pop(L, 3);
}

/* Takes a reference to the strategy's extractor in L (none: LUA_NOREF). */
static void bind_extractor(lua_State *L, ksrc *s) {
  s->extractor_ref = LUA_NOREF;
  cs__kafka_push_options(L, s->op);
  lua_getfield(L, -1, "extractor");
  if (lua_isfunction(L, -1))
    s->extractor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);
  lua_pop(L, 1);
}

/* Reads the options, creates the consumer, assigns the partitions. */
static int ksrc_open(lua_State *L, ksrc *s, char *err, size_t errlen) {
  cs_tinst *t = s->t;
  cs_job *job = t->w->job;
  long long timeout = job->cfg->kafka_connect_timeout_ms;
  cs__kafka_push_options(L, s->op);
  int kidx = lua_gettop(L);
  int rc = 0;
  cs_kafka_props dflt = {0}, props = {0}, force = {0};
  s->bootstrap = cs__kafka_bootstrap(L, kidx, job);
  if (s->bootstrap == NULL) {
    snprintf(err, errlen, "no brokers: give bootstrap_servers or set "
             "kafka.bootstrap-servers");
    rc = CS_EINVAL;
    goto done;
  }
  lua_getfield(L, kidx, "value_format");
  s->json = strcmp(luaL_optstring(L, -1, "string"), "json") == 0;
  lua_getfield(L, kidx, "bounded");
  s->bounded = lua_toboolean(L, -1);
  read_strategy(L, kidx, s);
  lua_getfield(L, kidx, "group_id");
  char group[300];
  snprintf(group, sizeof(group), "%s", lua_isstring(L, -1) ? lua_tostring(L, -1)
                                                           : job->name);
  if (job->cfg->group) /* the group's committed offsets are its positions */
    snprintf(group, sizeof(group), "%s-source", job->cfg->group);
  lua_pop(L, 3);
  lua_getfield(L, kidx, "properties");
  rc = cs__kafka_props_read(L, -1, &props);
  lua_pop(L, 1);
  if (rc == 0) rc = cs__kafka_props_add(&dflt, "auto.offset.reset", "earliest");
  if (rc == 0) rc = cs__kafka_props_add(&force, "group.id", group);
  if (rc == 0) rc = cs__kafka_props_add(&force, "enable.auto.commit", "false");
  if (rc == 0) rc = cs__kafka_props_add(&force, "enable.auto.offset.store", "false");
  if (rc) goto done;
  s->rk = cs__kafka_new(RD_KAFKA_CONSUMER, s->bootstrap, &dflt, &props, &force, &s->h,
                        NULL, err, errlen);
  if (s->rk == NULL) {
    rc = CS_EINVAL;
    goto done;
  }
  rd_kafka_poll_set_consumer(s->rk);
  s->q = rd_kafka_queue_get_consumer(s->rk);
  if ((rc = assign_partitions(L, kidx, s, timeout, err, errlen)) != 0) goto done;
  if (s->bounded && (rc = bound_partitions(s, timeout, err, errlen)) != 0) goto done;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(s->nparts);
  for (int i = 0; i < s->nparts; i++)
    if (!s->parts[i].done)
      rd_kafka_topic_partition_list_add(l, s->parts[i].topic, s->parts[i].partition)
          ->offset = s->parts[i].next;
  rd_kafka_resp_err_t e = rd_kafka_assign(s->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    snprintf(err, errlen, "cannot assign the partitions on %s: %s", s->bootstrap,
             rd_kafka_err2str(e));
    rc = CS_EIO;
  }
done:
  lua_pop(L, 1);
  cs__kafka_props_free(&dflt);
  cs__kafka_props_free(&props);
  cs__kafka_props_free(&force);
  return rc;
}

/* Loads cjson.decode for value_format = "json". */
static int load_json(lua_State *L, ksrc *s, char *err, size_t errlen) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
    snprintf(err, errlen, "value_format = \"json\" needs the lua-cjson module: %s",
             lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
    return CS_EINVAL;
  }
  lua_getfield(L, -1, "decode");
  s->json_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  return 0;
}

static int kafka_src_start(lua_State *L, cs_tinst *t) {
  ksrc *s = cs_calloc(1, sizeof(*s));
  if (s == NULL) return kfail(t, "out of memory");
  t->src = s;
  s->t = t;
  s->op = t->ops[0];
  s->pipefd[0] = s->pipefd[1] = -1;
  s->json_ref = LUA_NOREF;
  s->extractor_ref = LUA_NOREF;
  char err[1200], msg[1400];
  int rc = ksrc_open(L, s, err, sizeof(err));
  if (rc == 0) bind_extractor(L, s);
  if (rc == 0 && s->json) rc = load_json(L, s, err, sizeof(err));
  if (rc == 0 && pipe2(s->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
    snprintf(err, sizeof(err), "cannot make a pipe");
    rc = CS_EIO;
  }
  if (rc) {
    snprintf(msg, sizeof(msg), "kafka_source: %s", err);
    return kfail(t, msg);
  }
  rd_kafka_queue_io_event_enable(s->q, s->pipefd[1], "1", 1);
  uv_poll_init(&t->w->loop, &s->poll, s->pipefd[0]);
  s->poll.data = s;
  s->poll_open = 1;
  uv_poll_start(&s->poll, UV_READABLE, on_pipe);
  uv_timer_init(&t->w->loop, &s->timer);
  s->timer.data = s;
  s->timer_open = 1;
  uv_timer_start(&s->timer, on_timer, 200, 200);
  uv_unref((uv_handle_t *)&s->timer);
  if (s->bounded && s->ndone == s->nparts) t->src_done = 1;
  return 0;
}

/* ------------------------------------------------------------- records */

static kpart *find_part(ksrc *s, const char *topic, int32_t p) {
  for (int i = 0; i < s->nparts; i++)
    if (s->parts[i].partition == p && strcmp(s->parts[i].topic, topic) == 0)
      return &s->parts[i];
  return NULL;
}

/* lua-cjson decodes every number as a float; JSON has one number type
 * and Flink's JSON readers give 3 for 3, so integral values within 2^53
 * become integers, in nested tables too.  [-0, +0] */
static void json_integers(lua_State *L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  if (depth > 200 || !lua_istable(L, idx)) return;
  luaL_checkstack(L, 4, "nested JSON");
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Number d = lua_tonumber(L, -1);
      if (d == (lua_Number)(lua_Integer)d && d > -9007199254740992.0 &&
          d < 9007199254740992.0) {
        lua_pushvalue(L, -2);
        lua_pushinteger(L, (lua_Integer)d);
        lua_rawset(L, idx); /* an existing key: next() stays valid */
      }
    } else if (lua_istable(L, -1)) {
      json_integers(L, -1, depth + 1);
    }
    lua_pop(L, 1);
  }
}

/* Pushes the record table of m.  [-0, +1] Returns 0, or -1 when the value
 * is not JSON (the job failed). */
static int push_record(lua_State *L, ksrc *s, const rd_kafka_message_t *m,
                       const char *topic, int64_t ts) {
  lua_createtable(L, 0, 6);
  if (m->key) {
    lua_pushlstring(L, m->key, m->key_len);
    lua_setfield(L, -2, "key");
  }
  if (s->json) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->json_ref);
    lua_pushlstring(L, m->payload ? m->payload : "", m->len);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
      char msg[900];
      snprintf(msg, sizeof(msg), "kafka_source: topic '%s' partition %d offset %lld: "
               "the value is not valid JSON (value_format = \"json\"): %s", topic,
               (int)m->partition, (long long)m->offset,
               lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
      lua_pop(L, 2);
      kfail(s->t, msg);
      return -1;
    }
    if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Number d = lua_tonumber(L, -1);
      if (d == (lua_Number)(lua_Integer)d && d > -9007199254740992.0 &&
          d < 9007199254740992.0) {
        lua_pop(L, 1);
        lua_pushinteger(L, (lua_Integer)d);
      }
    }
    json_integers(L, -1, 0);
  } else if (m->payload) {
    lua_pushlstring(L, m->payload, m->len);
  } else {
    lua_pushnil(L);
  }
  lua_setfield(L, -2, "value");
  lua_pushinteger(L, m->partition);
  lua_setfield(L, -2, "partition");
  lua_pushinteger(L, m->offset);
  lua_setfield(L, -2, "offset");
  if (ts != CS_NO_TS) {
    lua_pushinteger(L, ts);
    lua_setfield(L, -2, "timestamp");
  }
  lua_pushstring(L, topic);
  lua_setfield(L, -2, "topic");
  return 0;
}

/* Handles a consumer error: fatal ones and errors of a partition fail the
 * job, naming the brokers, topic and partition; others librdkafka retries. */
static int consumer_error(ksrc *s, const rd_kafka_message_t *m) {
  char msg[900];
  const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : NULL;
  if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    kpart *kp = topic ? find_part(s, topic, m->partition) : NULL;
    if (kp && s->bounded && !kp->done && m->offset >= kp->stop) {
      kp->done = 1;
      s->ndone++;
    }
    return 0;
  }
  if (m->err == RD_KAFKA_RESP_ERR__TRANSPORT || m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
      m->err == RD_KAFKA_RESP_ERR__RESOLVE || m->err == RD_KAFKA_RESP_ERR__TIMED_OUT) {
    if (s->h.err_since_ms == 0) s->h.err_since_ms = cs_now_ms();
    snprintf(s->h.last, sizeof(s->h.last), "%s", rd_kafka_message_errstr(m));
    return 0;
  }
  if (topic)
    snprintf(msg, sizeof(msg), "kafka_source: topic '%s' partition %d on %s: %s", topic,
             (int)m->partition, s->bootstrap, rd_kafka_message_errstr(m));
  else
    snprintf(msg, sizeof(msg), "kafka_source: %s: %s", s->bootstrap,
             rd_kafka_message_errstr(m));
  return kfail(s->t, msg);
}

/* Calls the strategy's extractor(record, kafka_timestamp) on the record at
 * the top of L; *ts becomes what it returns (an integer number of ms).
 * Returns 0, or -1 when it failed or returned something else (the job
 * failed, the record popped). */
static int extract_ts(lua_State *L, ksrc *s, const rd_kafka_message_t *m, int64_t *ts) {
  int rec = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->extractor_ref);
  lua_pushvalue(L, rec);
  if (*ts == CS_NO_TS)
    lua_pushnil(L);
  else
    lua_pushinteger(L, *ts);
  if (cs_api_call(L, s->op, 2, 1, rec)) {
    lua_settop(L, rec - 1);
    return -1;
  }
  int isnum = 0;
  lua_Integer v = lua_tointegerx(L, -1, &isnum);
  if (!isnum) {
    char msg[700];
    snprintf(msg, sizeof(msg), "kafka_source: topic '%s' partition %d offset %lld: the "
             "watermark strategy's timestamp extractor returned %s, not an integer "
             "number of milliseconds", rd_kafka_topic_name(m->rkt), (int)m->partition,
             (long long)m->offset, luaL_typename(L, -1));
    lua_settop(L, rec);
    kfail(s->t, msg);
    lua_settop(L, rec - 1);
    return -1;
  }
  lua_pop(L, 1);
  *ts = v;
  return 0;
}

static int kafka_src_step(lua_State *L, cs_tinst *t) {
  ksrc *s = t->src;
  if (s == NULL || t->src_done) return 0;
  cs_worker *w = t->w;
  int progress = 0;
  for (int k = 0; k < RECORDS_PER_STEP && !cs_tinst_blocked(t); k++) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(s->rk, 0);
    if (m == NULL) break;
    progress = 1;
    if (m->err) {
      int rc = consumer_error(s, m);
      rd_kafka_message_destroy(m);
      if (rc) return 1;
      continue;
    }
    s->h.err_since_ms = 0;
    const char *topic = rd_kafka_topic_name(m->rkt);
    kpart *kp = find_part(s, topic, m->partition);
    if (kp == NULL || kp->done || (kp->next >= 0 && m->offset < kp->next)) {
      rd_kafka_message_destroy(m); /* not ours, or read again after a seek */
      continue;
    }
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    if (tt == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE || ts < 0) ts = CS_NO_TS;
    if (push_record(L, s, m, topic, ts)) {
      rd_kafka_message_destroy(m);
      return 1;
    }
    if (s->extractor_ref != LUA_NOREF && extract_ts(L, s, m, &ts)) {
      rd_kafka_message_destroy(m);
      return 1;
    }
    if (s->wm_mode && ts != CS_NO_TS && (kp->max_ts == CS_NO_TS || ts > kp->max_ts))
      kp->max_ts = ts;
    kp->last_seen = cs_now_ms();
    kp->next = m->offset + 1;
    if (s->bounded && kp->next >= kp->stop) {
      kp->done = 1;
      s->ndone++;
    }
    rd_kafka_message_destroy(m);
    int64_t before = w->cur_ts;
    w->cur_ts = ts;
    w->cur_src_topic = kp->topic;
    w->cur_src_part = kp->partition;
    w->cur_src_off = kp->next - 1;
    int rc = cs_emit(L, s->op);
    w->cur_src_topic = NULL;
    w->cur_ts = before;
    if (rc) return 1;
  }
  if (s->bounded && s->ndone == s->nparts) t->src_done = 1;
  long long timeout = w->job->cfg->kafka_connect_timeout_ms;
  char why[900];
  if (cs__kafka_unreachable(s->rk, &s->h, timeout, why, sizeof(why))) {
    char msg[1200];
    snprintf(msg, sizeof(msg), "kafka_source: brokers %s: %s", s->bootstrap, why);
    kfail(t, msg);
    return 1;
  }
  return progress;
}

/* ------------------------------------------------------ checkpointing */

/* "kafka t:0:17,t:2:5": the next offset of every partition this subtask
 * reads (a logical offset, such as -2 for the beginning, before its first
 * record). Also kept to be committed to the group when the checkpoint
 * being taken (the worker's newest trigger) completes. */
static char *kafka_src_position(cs_tinst *t) {
  ksrc *s = t->src;
  if (s == NULL) return cs_strdup("none");
  cs_buf b = {0};
  cs_buf_append(&b, "kafka", 5);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(s->nparts);
  for (int i = 0; i < s->nparts; i++) {
    kpart *kp = &s->parts[i];
    cs_buf_printf(&b, "%c%s:%d:%lld", i ? ',' : ' ', kp->topic, (int)kp->partition,
                  (long long)kp->next);
    if (kp->next >= 0) rd_kafka_topic_partition_list_add(l, kp->topic, kp->partition)
                           ->offset = kp->next;
  }
  cs_buf_append(&b, "", 1);
  if (s->ncommits == MAX_COMMITS) { /* the oldest never completed */
    rd_kafka_topic_partition_list_destroy(s->commits[0].offsets);
    memmove(&s->commits[0], &s->commits[1], sizeof(s->commits[0]) * (MAX_COMMITS - 1));
    s->ncommits--;
  }
  s->commits[s->ncommits].id = t->w->trigger_seen;
  s->commits[s->ncommits++].offsets = l;
  return b.data;
}

/* Commits the offsets of the newest completed checkpoint to the group
 * (asynchronously: for monitoring, a failure only logs). */
static int kafka_src_notify(lua_State *L, cs_opi *op, int64_t id) {
  (void)L;
  ksrc *s = op->t->src;
  if (s == NULL || !op->t->is_source || op != op->t->ops[0]) return 0;
  int newest = -1;
  for (int i = 0; i < s->ncommits; i++)
    if (s->commits[i].id <= id) newest = i;
  if (newest < 0) return 0;
  /* Not while the brokers fail: a commit waiting for its coordinator
   * would hold up the consumer's destruction (a restart) until it times
   * out; the next checkpoint's commit carries these offsets anyway. */
  if (s->commits[newest].offsets->cnt > 0 && s->h.err_since_ms == 0)
    rd_kafka_commit(s->rk, s->commits[newest].offsets, 1);
  for (int i = 0; i <= newest; i++)
    rd_kafka_topic_partition_list_destroy(s->commits[i].offsets);
  memmove(&s->commits[0], &s->commits[newest + 1],
          sizeof(s->commits[0]) * (size_t)(s->ncommits - newest - 1));
  s->ncommits -= newest + 1;
  return 0;
}

/* After a hot reload the worker runs a new Lua state: cjson.decode is
 * looked up in it (the old ref went with the old state). */
static void kafka_src_rebind(lua_State *L, cs_tinst *t) {
  ksrc *s = t->src;
  if (s == NULL) return;
  bind_extractor(L, s); /* the reloaded script's extractor */
  if (!s->json) return;
  char err[300];
  s->json_ref = LUA_NOREF;
  if (load_json(L, s, err, sizeof(err))) kfail(t, err);
}

static void kafka_src_cancel(lua_State *L, cs_tinst *t) {
  (void)L;
  (void)t;
}

static void kafka_src_destroy(lua_State *L, cs_tinst *t) {
  ksrc *s = t->src;
  if (s == NULL) return;
  if (s->poll_open) uv_close((uv_handle_t *)&s->poll, poll_closed);
  if (s->timer_open) uv_close((uv_handle_t *)&s->timer, timer_closed);
  for (int i = 0; i < 100 && ((s->poll_open && !s->poll_closed) ||
                              (s->timer_open && !s->timer_closed)); i++)
    uv_run(&t->w->loop, UV_RUN_NOWAIT);
  if (s->q) {
    rd_kafka_queue_io_event_enable(s->q, -1, NULL, 0);
    rd_kafka_queue_destroy(s->q);
  }
  if (s->rk) {
    /* A bounded source read everything: its end offsets are the group's. */
    if (t->src_done && s->bounded && !t->cancelled && !atomic_load(&t->w->job->failed)) {
      rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(s->nparts);
      for (int i = 0; i < s->nparts; i++)
        if (s->parts[i].next >= 0)
          rd_kafka_topic_partition_list_add(l, s->parts[i].topic, s->parts[i].partition)
              ->offset = s->parts[i].next;
      if (l->cnt) rd_kafka_commit(s->rk, l, 0);
      rd_kafka_topic_partition_list_destroy(l);
    }
    rd_kafka_destroy_flags(s->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  }
  for (int i = 0; i < s->ncommits; i++)
    rd_kafka_topic_partition_list_destroy(s->commits[i].offsets);
  for (int i = 0; i < s->nparts; i++) cs_free(s->parts[i].topic);
  cs_free(s->parts);
  if (s->pipefd[0] >= 0) close(s->pipefd[0]);
  if (s->pipefd[1] >= 0) close(s->pipefd[1]);
  luaL_unref(L, LUA_REGISTRYINDEX, s->json_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, s->extractor_ref);
  cs_free(s->bootstrap);
  cs_free(s);
  t->src = NULL;
}

/* The subtask's watermark: the minimum over its partitions (see the top of
 * the file); *idle when every partition still read is idle. */
static int64_t kafka_src_watermark(cs_opi *op, uint64_t now_ms, int *idle) {
  ksrc *s = op->t->src;
  if (s == NULL || s->wm_mode != 2 || op != op->t->ops[0]) return CS_NO_TS;
  int64_t min = CS_MAX_WATERMARK;
  int active = 0;
  for (int i = 0; i < s->nparts; i++) {
    kpart *kp = &s->parts[i];
    if (kp->done) continue;
    if (s->wm_idleness > 0 && (int64_t)now_ms - kp->last_seen >= s->wm_idleness) continue;
    active++;
    if (kp->max_ts == CS_NO_TS) return CS_NO_TS; /* nothing read yet: holds back */
    int64_t wm = kp->max_ts < CS_NO_TS + s->wm_bound + 1 ? CS_NO_TS
                                                        : kp->max_ts - s->wm_bound - 1;
    if (wm < min) min = wm;
  }
  if (active == 0) {
    *idle = s->wm_idleness > 0 && s->ndone < s->nparts;
    return CS_NO_TS;
  }
  return min;
}

const cs_op_type cs_src_kafka = {
    .name = "source_kafka",
    .src_start = kafka_src_start,
    .src_step = kafka_src_step,
    .src_position = kafka_src_position,
    .src_rebind = kafka_src_rebind,
    .src_cancel = kafka_src_cancel,
    .src_destroy = kafka_src_destroy,
    .notify_checkpoint_complete = kafka_src_notify,
    .gen_watermark = kafka_src_watermark,
};
