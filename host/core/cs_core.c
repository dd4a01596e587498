/*
 * cs_core.c - the `cstream.core` module: the engine functions the Lua side
 * of the API calls (execute, format, digest, sleep, default_parallelism).
 * env:execute() joins the layers: the job's configuration (host/config),
 * the plan (host/plan), a type for every node (host/operators,
 * host/connectors) and the run (host/runtime).
 */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "host/api/cs_api.h"
#include "host/config/cs_config.h"
#include "host/connectors/cs_connectors.h"
#include "host/core/cs_core.h"
#include "host/lua/cs_lua.h"
#include "host/operators/cs_operators.h"
#include "host/rest/cs_rest.h"
#include "host/runtime/cs_runtime.h"
#include "host/testing/cs_testing.h"

static const char options_key = 'o';

void cs_core_set_options(lua_State *L, cs_options *opts) {
  lua_pushlightuserdata(L, opts);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &options_key);
}

static cs_options *get_options(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &options_key);
  cs_options *o = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return o;
}

int cs_default_parallelism(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

static int core_default_parallelism(lua_State *L) {
  cs_options *o = get_options(L);
  int par = 0;
  for (int i = 0; o && i < o->nflags; i++)
    if (strcmp(o->flags[i].key, "parallelism.default") == 0)
      par = atoi(o->flags[i].value);
  lua_pushinteger(L, par > 0 ? par : cs_default_parallelism());
  return 1;
}

static int job_error_tostring(lua_State *L) {
  lua_getfield(L, 1, "message");
  return 1;
}

/* Raises the job's failure as an error object whose tostring is the
 * message (so no planning traceback is appended to it). */
static int raise_job_error(lua_State *L, const char *msg) {
  lua_createtable(L, 0, 2);
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "job_failed");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, job_error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_setmetatable(L, -2);
  return lua_error(L);
}

static void free_strings(char **v, int n) {
  for (int i = 0; v && i < n; i++) cs_free(v[i]);
  cs_free(v);
}

void cs_options_free_results(cs_options *o) {
  cs_free(o->fingerprint);
  free_strings(o->digests, o->ndigests);
  cs_free(o->restart_savepoint);
  o->fingerprint = o->restart_savepoint = NULL;
  o->digests = NULL;
  o->ndigests = 0;
}

/* Calls env:_digests() (env at env_idx) and copies the strings. */
static void get_digests(lua_State *L, int env_idx, char ***out, int *n) {
  *out = NULL;
  *n = 0;
  lua_getfield(L, env_idx, "_digests");
  lua_pushvalue(L, env_idx);
  if (cs_lua_pcall(L, 1, 1) != LUA_OK || !lua_istable(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  int len = (int)luaL_len(L, -1);
  char **v = cs_calloc((size_t)len + 1, sizeof(char *));
  for (int i = 0; v && i < len; i++) {
    lua_geti(L, -1, i + 1);
    size_t l;
    const char *d = lua_tolstring(L, -1, &l);
    v[i] = cs_malloc(l + 1);
    if (v[i]) {
      memcpy(v[i], d ? d : "", d ? l : 0);
      v[i][d ? l : 0] = '\0';
      /* keep them C strings (a uid may hold a NUL) */
      for (size_t k = 0; k < l; k++)
        if (v[i][k] == '\0') v[i][k] = '\1';
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  *out = v;
  *n = v ? len : 0;
}

/* Calls require("cstream")[fn] with no arguments and nres results.
 * Returns 0 with the results pushed, or -1 with nothing pushed. */
static int call_cstream(lua_State *L, const char *fn, int nres) {
  lua_getglobal(L, "require");
  lua_pushstring(L, "cstream");
  if (cs_lua_pcall(L, 1, 1) != LUA_OK) {
    lua_pop(L, 1);
    return -1;
  }
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1) || cs_lua_pcall(L, 0, nres) != LUA_OK) {
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

int cs_core_record_requires(lua_State *L) {
  return call_cstream(L, "_record_requires", 0);
}

char **cs_core_local_modules(lua_State *L, const char *script, int *n) {
  *n = 0;
  int len = 0;
  if (call_cstream(L, "_local_modules", 1) == 0) {
    if (lua_istable(L, -1))
      len = (int)luaL_len(L, -1);
  } else {
    lua_pushnil(L);
  }
  char **v = cs_calloc((size_t)len + 2, sizeof(char *));
  if (v) {
    char *abs = realpath(script, NULL);
    v[(*n)++] = cs_strdup(abs ? abs : script);
    free(abs);
    for (int i = 0; i < len; i++) {
      lua_geti(L, -1, i + 1);
      const char *f = lua_tostring(L, -1);
      char *p = f ? realpath(f, NULL) : NULL;
      if (p) v[(*n)++] = cs_strdup(p);
      free(p);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  return v;
}

/* Sets key from the value at t[field] (a number, string or boolean) at the
 * job's origin. Returns 0, or raises nothing and returns -1 with err set. */
static int job_set(lua_State *L, cs_config *cfg, int t, const char *field,
                   const char *key, const char *where, char *err, size_t errlen) {
  int rc = 0;
  int ty = lua_getfield(L, t, field);
  if (ty == LUA_TNUMBER && !lua_isinteger(L, -1)) {
    lua_Integer n;
    if (lua_numbertointeger(lua_tonumber(L, -1), &n)) {
      lua_pop(L, 1);
      lua_pushinteger(L, n);
    }
  }
  if (ty == LUA_TNUMBER || ty == LUA_TSTRING) {
    rc = cs_config_set(cfg, key, lua_tostring(L, -1), CS_CONF_JOB, where, err, errlen);
  } else if (ty == LUA_TBOOLEAN) {
    rc = cs_config_set(cfg, key, lua_toboolean(L, -1) ? "true" : "false",
                       CS_CONF_JOB, where, err, errlen);
  }
  lua_pop(L, 1);
  return rc ? -1 : 0;
}

/* Builds the job's configuration: defaults < cstream-conf.yaml < the job's
 * own calls (env table at env_idx) < flags. Returns NULL with err set. */
static cs_config *build_config(lua_State *L, int env_idx, cs_options *o,
                               char *err, size_t errlen) {
  cs_config *cfg = cs_config_create();
  if (cfg == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  char *path = cs_config_find(o->conf);
  if (path) {
    int rc = cs_config_load_file(cfg, path, err, errlen);
    cs_free(path);
    if (rc) goto fail;
  }
  const char *where = o->script;
  if (job_set(L, cfg, env_idx, "_parallelism", "parallelism.default", where, err, errlen) ||
      job_set(L, cfg, env_idx, "_max_parallelism", "pipeline.max-parallelism", where, err, errlen) ||
      job_set(L, cfg, env_idx, "_checkpoint_interval", "execution.checkpointing.interval", where, err, errlen))
    goto fail;
  if (lua_getfield(L, env_idx, "_backend") == LUA_TTABLE) {
    int b = lua_gettop(L);
    if (job_set(L, cfg, b, "kind", "state.backend", where, err, errlen) ||
        job_set(L, cfg, b, "uri", "state.checkpoints.dir", where, err, errlen) ||
        job_set(L, cfg, b, "incremental", "state.backend.incremental", where, err, errlen) ||
        job_set(L, cfg, b, "max_state_size", "state.backend.memory.max-state-size", where, err, errlen)) {
      lua_pop(L, 1);
      goto fail;
    }
  }
  lua_pop(L, 1);
  for (int i = 0; i < o->nflags; i++)
    if (cs_config_set(cfg, o->flags[i].key, o->flags[i].value, CS_CONF_FLAG,
                      o->flags[i].flag, err, errlen))
      goto fail;
  return cfg;
fail:
  cs_config_destroy(cfg);
  return NULL;
}

/* The run configuration the engine uses, read from cfg (strings borrowed
 * from cfg, which must outlive it). */
static void run_config_from(const cs_config *cfg, const cs_options *o,
                            cs_run_config *rc) {
  memset(rc, 0, sizeof(*rc));
  rc->backend = cs_config_backend(cfg);
  rc->checkpoint_dir = cs_config_str(cfg, "state.checkpoints.dir");
  rc->savepoint_dir = cs_config_str(cfg, "state.savepoints.dir");
  rc->interval_ms = cs_config_int(cfg, "execution.checkpointing.interval");
  rc->timeout_ms = cs_config_int(cfg, "execution.checkpointing.timeout");
  rc->tolerable_failures =
      (int)cs_config_int(cfg, "execution.checkpointing.tolerable-failed-checkpoints");
  rc->num_retained = (int)cs_config_int(cfg, "state.checkpoints.num-retained");
  rc->incremental = (int)cs_config_int(cfg, "state.backend.incremental");
  rc->memory_max_state = cs_config_int(cfg, "state.backend.memory.max-state-size");
  const char *rs = cs_config_str(cfg, "restart-strategy");
  int restarts = rs ? strcmp(rs, "fixed-delay") == 0 : rc->interval_ms > 0;
  rc->restart_attempts =
      restarts ? (int)cs_config_int(cfg, "restart-strategy.fixed-delay.attempts") : -1;
  rc->restart_delay_ms = cs_config_int(cfg, "restart-strategy.fixed-delay.delay");
  rc->restore = o->restore;
  rc->allow_non_restored = o->allow_non_restored;
  rc->savepoint_on_stop = o->savepoint_on_stop;
  rc->rest_port = cs_config_is_set(cfg, "rest.port") ? (int)cs_config_int(cfg, "rest.port") : -1;
  rc->rest_address = cs_config_str(cfg, "rest.address");
  rc->progress = o->progress;
  rc->rocksdb_localdir = cs_config_str(cfg, "state.backend.rocksdb.localdir");
  rc->rocksdb_block_cache = cs_config_int(cfg, "state.backend.rocksdb.block.cache-size");
  rc->rocksdb_write_buffer = cs_config_int(cfg, "state.backend.rocksdb.writebuffer.size");
  rc->rocksdb_value_cache = cs_config_int(cfg, "state.backend.rocksdb.value-cache.size");
  rc->watermark_interval_ms = cs_config_int(cfg, "pipeline.auto-watermark-interval");
  rc->max_line_length = cs_config_int(cfg, "source.max-line-length");
  rc->max_record_size = cs_config_int(cfg, "pipeline.max-record-size");
  rc->lua_memory_max = cs_config_int(cfg, "taskmanager.memory.lua.max");
  rc->kafka_bootstrap = cs_config_str(cfg, "kafka.bootstrap-servers");
  rc->group = cs_config_str(cfg, "cluster.group");
  rc->group_partitions = (int)cs_config_int(cfg, "cluster.partitions");
  rc->group_session_ms = cs_config_int(cfg, "cluster.session-timeout");
  rc->kafka_connect_timeout_ms = cs_config_int(cfg, "kafka.connect-timeout");
  rc->kafka_txn_timeout_ms = cs_config_int(cfg, "kafka.transaction-timeout");
  if (rc->num_retained < 1) rc->num_retained = 1;
}

/* The type that runs a node of kind k. */
static const cs_op_type *type_of(cs_op_kind k) {
  switch (k) {
  case CS_OP_SRC_ELEMENTS: return &cs_src_elements;
  case CS_OP_SRC_FILE: return &cs_src_file;
  case CS_OP_SRC_SOCKET: return &cs_src_socket;
  case CS_OP_SRC_CUSTOM: return &cs_src_custom;
  case CS_OP_SRC_KAFKA: return &cs_src_kafka;
  case CS_OP_MAP: return &cs_op_map;
  case CS_OP_FLAT_MAP: return &cs_op_flat_map;
  case CS_OP_FILTER: return &cs_op_filter;
  case CS_OP_PROCESS: return &cs_op_process;
  case CS_OP_REDUCE: return &cs_op_reduce;
  case CS_OP_CO_MAP: return &cs_op_co_map;
  case CS_OP_CO_FLAT_MAP: return &cs_op_co_flat_map;
  case CS_OP_TIMESTAMPS: return &cs_op_timestamps;
  case CS_OP_CO_PROCESS: return &cs_op_co_process;
  case CS_OP_SINK_PRINT: return &cs_sink_print;
  case CS_OP_SINK_FILE: return &cs_sink_file;
  case CS_OP_SINK_CUSTOM: return &cs_sink_custom;
  case CS_OP_SINK_KAFKA: return &cs_sink_kafka;
  case CS_OP_SRC_REPARTITION: return &cs_src_repartition;
  case CS_OP_SINK_REPARTITION: return &cs_sink_repartition;
  }
  return NULL;
}

/* core.execute(env, name, fingerprint): plans and runs the job (planning
 * state) or binds this worker to it (worker state). */
static int core_execute(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *name = luaL_checkstring(L, 2);
  const char *fp = luaL_checkstring(L, 3);
  cs_worker *w = cs_worker_of(L);
  if (w) return cs_job_worker_execute(L, w, 1, fp);
  cs_options *o = get_options(L);
  if (o == NULL)
    return luaL_error(L, "env:execute() needs the cstream-lua runner: run "
                         "'cstream-lua job.lua'");
  if (o->executed)
    return luaL_error(L, "env:execute() was already called: a job script "
                         "runs one job");
  o->executed = 1;
  char err[1024];
  cs_config *cfg = build_config(L, 1, o, err, sizeof(err));
  if (cfg == NULL) return raise_job_error(L, err);
  if (o->plan_only) { /* a reload's check: record the plan, run nothing */
    o->fingerprint = cs_strdup(fp);
    get_digests(L, 1, &o->digests, &o->ndigests);
    cs_config_destroy(cfg);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (o->print_config) {
    cs_config_print(cfg, stdout);
    cs_config_destroy(cfg);
    lua_pushboolean(L, 1);
    return 1;
  }
  int par = (int)cs_config_int(cfg, "parallelism.default");
  if (par <= 0) par = cs_default_parallelism();
  lua_pushinteger(L, cs_config_int(cfg, "pipeline.max-parallelism"));
  lua_setfield(L, 1, "_max_parallelism");
  cs_plan *plan = NULL;
  if (cs_plan_build(L, 1, par, &plan, err, sizeof(err))) {
    cs_config_destroy(cfg);
    return luaL_error(L, "%s", err);
  }
  for (int i = 0; i < plan->nnodes; i++) plan->nodes[i].type = type_of(plan->nodes[i].kind);
  cs_run_config run;
  run_config_from(cfg, o, &run);
  cs_job_hooks hooks = {0};
  if (o->dev_hooks) hooks = *o->dev_hooks;
  hooks.open_core = cs_core_open;
  hooks.observe_open = cs_rest_open;
  hooks.observe_start = cs_rest_start;
  hooks.observe_stop = cs_rest_stop;
  hooks.observe_close = cs_rest_close;
  hooks.group_open = cs_group_open;
  hooks.group_close = cs_group_close;
  char **watch = NULL;
  if (o->watch) {
    get_digests(L, 1, &run.digests, &run.ndigests);
    watch = cs_core_local_modules(L, o->script, &run.nwatch_files);
    run.watch = 1;
    run.watch_files = (const char *const *)watch;
    run.restart_savepoint = &o->restart_savepoint;
  }
  char *msg = NULL;
  int rc = cs_job_run(plan, &run, &hooks, name, o->script, o->argc, o->argv, fp, &msg);
  cs_plan_destroy(plan);
  cs_config_destroy(cfg);
  free_strings(run.digests, run.ndigests);
  free_strings(watch, run.nwatch_files);
  if (rc) {
    lua_pushstring(L, msg ? msg : cs_strerror(rc));
    cs_free(msg);
    return raise_job_error(L, lua_tostring(L, -1));
  }
  cs_free(msg);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.cluster(env): the group this process belongs to and the number of
 * partitions of its repartition topics (cluster.group, cluster.partitions),
 * or nothing when it runs the job alone. env:execute() rewrites the graph
 * for a group in the planning state and in every worker alike. */
static int core_cluster(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  cs_worker *w = cs_worker_of(L);
  if (w) {
    const cs_run_config *rc = w->job->cfg;
    if (rc->group == NULL) return 0;
    lua_pushstring(L, rc->group);
    lua_pushinteger(L, rc->group_partitions);
    return 2;
  }
  cs_options *o = get_options(L);
  if (o == NULL) return 0;
  char err[1024];
  cs_config *cfg = build_config(L, 1, o, err, sizeof(err));
  if (cfg == NULL) return raise_job_error(L, err);
  const char *g = cs_config_str(cfg, "cluster.group");
  int n = 0;
  if (g) {
    lua_pushstring(L, g);
    lua_pushinteger(L, cs_config_int(cfg, "cluster.partitions"));
    n = 2;
  }
  cs_config_destroy(cfg);
  return n;
}

/* core.digest(s): a 128-bit hash of s, as 32 hex digits. */
static int core_digest(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  XXH128_hash_t h = XXH3_128bits(s, len);
  char hex[33];
  snprintf(hex, sizeof(hex), "%016llx%016llx", (unsigned long long)h.high64,
           (unsigned long long)h.low64);
  lua_pushlstring(L, hex, 32);
  return 1;
}

/* core.format(v): v rendered as Flink prints it. */
static int core_format(lua_State *L) {
  luaL_checkany(L, 1);
  cs_buf b = {0};
  int rc = cs_format_value(L, 1, &b);
  if (rc) {
    cs_buf_free(&b);
    return luaL_error(L, "out of memory");
  }
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  cs_buf_free(&b);
  return 1;
}

int cs_core_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"execute", core_execute},
      {"format", core_format},
      {"digest", core_digest},
      {"cluster", core_cluster},
      {"sleep", cs_source_sleep},
      {"default_parallelism", core_default_parallelism},
      {"_harness", cs_testing_new},
      {NULL, NULL}};
  cs_api_open_types(L);
  cs_testing_open_types(L);
  luaL_newlib(L, fns);
  lua_pushstring(L, CS_VERSION);
  lua_setfield(L, -2, "VERSION");
  return 1;
}
