/*
 * cs_kafka_client.c - the librdkafka handling kafka_source and kafka_sink
 * share (cs_kafka_int.h): options, client creation, topic metadata with a
 * deadline, and error callbacks that keep what the connectors report.
 */
#include <lauxlib.h>
#include <string.h>

#include "host/connectors/cs_kafka_int.h"

int cs__kafka_props_add(cs_kafka_props *p, const char *k, const char *v) {
  char **kv = cs_realloc(p->kv, sizeof(*kv) * (size_t)(2 * p->n + 2));
  if (kv == NULL) return CS_ENOMEM;
  p->kv = kv;
  kv[2 * p->n] = cs_strdup(k);
  kv[2 * p->n + 1] = cs_strdup(v);
  if (kv[2 * p->n] == NULL || kv[2 * p->n + 1] == NULL) {
    cs_free(kv[2 * p->n]);
    cs_free(kv[2 * p->n + 1]);
    return CS_ENOMEM;
  }
  p->n++;
  return 0;
}

int cs__kafka_props_read(lua_State *L, int idx, cs_kafka_props *p) {
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) return 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      char num[64];
      const char *v = num;
      if (lua_isboolean(L, -1))
        v = lua_toboolean(L, -1) ? "true" : "false";
      else if (lua_isinteger(L, -1))
        snprintf(num, sizeof(num), "%lld", (long long)lua_tointeger(L, -1));
      else if (lua_type(L, -1) == LUA_TNUMBER)
        snprintf(num, sizeof(num), "%.17g", (double)lua_tonumber(L, -1));
      else if (lua_type(L, -1) == LUA_TSTRING)
        v = lua_tostring(L, -1);
      else
        v = NULL;
      int rc = v ? cs__kafka_props_add(p, lua_tostring(L, -2), v) : 0;
      if (rc) {
        lua_pop(L, 2);
        return rc;
      }
    }
    lua_pop(L, 1);
  }
  return 0;
}

const char *cs__kafka_props_get(const cs_kafka_props *p, const char *k) {
  for (int i = p ? p->n - 1 : -1; i >= 0; i--)
    if (strcmp(p->kv[2 * i], k) == 0) return p->kv[2 * i + 1];
  return NULL;
}

void cs__kafka_props_free(cs_kafka_props *p) {
  for (int i = 0; i < 2 * p->n; i++) cs_free(p->kv[i]);
  cs_free(p->kv);
  p->kv = NULL;
  p->n = 0;
}

/* librdkafka's error callback: keeps the newest error and whether every
 * broker is down (runs on the thread that polls the client). */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  (void)rk;
  cs_kafka_health *h = opaque;
  if (h == NULL) return;
  snprintf(h->last, sizeof(h->last), "%s", reason);
  if (h->err_since_ms == 0) h->err_since_ms = cs_now_ms();
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) h->all_down = 1;
  if (err == RD_KAFKA_RESP_ERR__FATAL) h->fatal = 1;
}

int cs__kafka_unreachable(rd_kafka_t *rk, cs_kafka_health *h, long long timeout_ms,
                          char *err, size_t errlen) {
  if (h->err_since_ms == 0 || cs_now_ms() - h->err_since_ms <= timeout_ms) return 0;
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, 2000);
  if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_metadata_destroy(md);
    h->err_since_ms = 0; /* the errors were transient */
    h->all_down = 0;
    return 0;
  }
  snprintf(err, errlen, "the Kafka brokers have been failing for more than %lld ms "
           "(kafka.connect-timeout): %s (now: %s)", timeout_ms, h->last,
           rd_kafka_err2str(e));
  return 1;
}

static int set_all(rd_kafka_conf_t *conf, const cs_kafka_props *p, char *err,
                   size_t errlen) {
  char why[512];
  for (int i = 0; p && i < p->n; i++) {
    if (rd_kafka_conf_set(conf, p->kv[2 * i], p->kv[2 * i + 1], why, sizeof(why)) !=
        RD_KAFKA_CONF_OK) {
      snprintf(err, errlen, "bad librdkafka property %s = '%s': %s", p->kv[2 * i],
               p->kv[2 * i + 1], why);
      return -1;
    }
  }
  return 0;
}

rd_kafka_conf_t *cs__kafka_conf(const char *bootstrap, const cs_kafka_props *dflt,
                                const cs_kafka_props *props, const cs_kafka_props *force,
                                cs_kafka_health *h, char *err, size_t errlen) {
  char why[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, why, sizeof(why)) !=
      RD_KAFKA_CONF_OK) {
    snprintf(err, errlen, "bad bootstrap_servers '%s': %s", bootstrap, why);
    goto fail;
  }
  /* librdkafka logs syslog-style lines on stderr; its errors reach us
   * through the callback and our messages, so only critical ones print
   * (a property log_level given by the job wins). */
  rd_kafka_conf_set(conf, "log_level", "2", why, sizeof(why));
  /* A missing topic is an error the job reports, not one a metadata
   * request creates (the broker's auto.create.topics.enable may still). */
  rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", why, sizeof(why));
  if (set_all(conf, dflt, err, errlen) || set_all(conf, props, err, errlen) ||
      set_all(conf, force, err, errlen))
    goto fail;
  rd_kafka_conf_set_error_cb(conf, on_error);
  rd_kafka_conf_set_opaque(conf, h);
  return conf;
fail:
  rd_kafka_conf_destroy(conf);
  return NULL;
}

rd_kafka_t *cs__kafka_new(rd_kafka_type_t type, const char *bootstrap,
                          const cs_kafka_props *dflt, const cs_kafka_props *props,
                          const cs_kafka_props *force, cs_kafka_health *h,
                          void (*dr)(rd_kafka_t *, const rd_kafka_message_t *, void *),
                          char *err, size_t errlen) {
  char why[512];
  rd_kafka_conf_t *conf = cs__kafka_conf(bootstrap, dflt, props, force, h, err, errlen);
  if (conf == NULL) return NULL;
  if (dr) rd_kafka_conf_set_dr_msg_cb(conf, dr);
  rd_kafka_t *rk = rd_kafka_new(type, conf, why, sizeof(why));
  if (rk == NULL) {
    snprintf(err, errlen, "cannot create a Kafka client for %s: %s", bootstrap, why);
    return NULL; /* rd_kafka_new destroyed conf */
  }
  return rk;
}

int cs__kafka_topic_partitions(rd_kafka_t *rk, const char *bootstrap,
                               const char *topic, long long timeout_ms,
                               int *nparts, char *err, size_t errlen) {
  int64_t deadline = cs_now_ms() + timeout_ms;
  rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
  for (;;) {
    int64_t left = deadline - cs_now_ms();
    if (left <= 0) break;
    const struct rd_kafka_metadata *md = NULL;
    /* All topics: a request naming the topic could create it (brokers
     * with auto.create.topics.enable, and the mock cluster). */
    e = rd_kafka_metadata(rk, 1, NULL, &md, (int)(left < 2000 ? left : 2000));
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const rd_kafka_metadata_topic_t *mt = NULL;
      for (int i = 0; i < md->topic_cnt && !mt; i++)
        if (strcmp(md->topics[i].topic, topic) == 0) mt = &md->topics[i];
      rd_kafka_resp_err_t te = mt ? mt->err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
      int n = mt ? mt->partition_cnt : 0;
      rd_kafka_metadata_destroy(md);
      if (te == RD_KAFKA_RESP_ERR_NO_ERROR && n > 0) {
        *nparts = n;
        return 0;
      }
      if (te == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || n == 0) {
        snprintf(err, errlen, "topic '%s' does not exist on the Kafka broker(s) %s",
                 topic, bootstrap);
        return CS_ENOTFOUND;
      }
      e = te; /* leader not available yet, ...: retry */
    }
    uv_sleep(100);
  }
  snprintf(err, errlen, "cannot reach the Kafka broker(s) %s within %lld ms "
           "(kafka.connect-timeout) for topic '%s': %s", bootstrap, timeout_ms,
           topic, rd_kafka_err2str(e));
  return CS_EIO;
}

char *cs__kafka_bootstrap(lua_State *L, int kafka_idx, const cs_job *job) {
  char *b = NULL;
  if (lua_getfield(L, kafka_idx, "bootstrap_servers") == LUA_TSTRING)
    b = cs_strdup(lua_tostring(L, -1));
  else if (job->cfg->kafka_bootstrap)
    b = cs_strdup(job->cfg->kafka_bootstrap);
  lua_pop(L, 1);
  return b;
}

void cs__kafka_push_options(lua_State *L, cs_opi *op) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->w->env_ref);
  lua_getfield(L, -1, "_nodes");
  lua_geti(L, -1, op->node->index + 1);
  lua_getfield(L, -1, "kafka");
  lua_replace(L, -4);
  lua_pop(L, 2);
}
