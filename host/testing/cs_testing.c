/*
 * cs_testing.c - the operator test harness (cs_testing.h): one operator
 * instance on a worker of its own, inside the caller's Lua state.
 *
 * What a job builds from its plan for a subtask, the harness builds by
 * hand for one node: a two-node plan (the operator, and a capture of its
 * main output chained after it), one task, one job record (so that
 * failures are reported as in a job: operator, record, traceback), one
 * worker with a libuv loop (timers register handles on it; it never
 * runs: time moves only when the test says so) and two operator
 * instances. Records enter through cs_opi_process with the worker's keyed
 * context set as the scheduler sets it; watermarks go to the type's
 * on_watermark; processing time fires timers through cs_timers_fire and
 * is what ctx:current_processing_time() and state TTL read.
 */
#include <lauxlib.h>
#include <string.h>

#include "host/api/cs_api.h"
#include "host/connectors/cs_connectors.h"
#include "host/lua/cs_lua.h"
#include "host/operators/cs_operators.h"
#include "host/testing/cs_testing.h"
#include "state/cs_codec.h"
#include "state/cs_ttl.h"

#define HARNESS_MT "cstream.Harness"
#define SCRIPT "cstream.testing" /* what messages name instead of a job file */

typedef struct harness {
  cs_plan plan;
  cs_node nodes[2]; /* [0] the operator, [1] the capture of its output */
  cs_task task;
  int task_nodes[2];
  cs_run_config cfg;
  cs_job job;
  cs_worker w;
  cs_tinst t;
  cs_opi *tops[2]; /* t.ops */
  cs_opi opis[2];
  cs_opm opm[2];   /* their metrics, as a job's (counted, never read) */
  cs_tm tm;
  cs_out out;      /* the operator's one output: into the capture */
  int sync_init;   /* job's mutexes and condition made */
  int loop_init;
  int opened, closed, restored;
  int env_ref;     /* {_nodes = {{fn = operator}}}, as a job's environment */
  int records_ref; /* main output: {{value = v, timestamp = ts}, ...} */
  int sides_ref;   /* side outputs: tag -> records */
  cs_buf key;      /* the current key, canonical bytes */
  int has_key;
  int kg;
  int64_t now;     /* processing time */
} harness;

/* ======================================================= the operator */

static const struct {
  const char *name;
  cs_op_kind kind;
  const cs_op_type *type;
  int keyed_only;
  int ninputs; /* 2: a connected stream's operator (input 0 or 1) */
} KINDS[] = {
    {"process", CS_OP_PROCESS, &cs_op_process, 0, 1},
    {"flat_map", CS_OP_FLAT_MAP, &cs_op_flat_map, 0, 1},
    {"map", CS_OP_MAP, &cs_op_map, 0, 1},
    {"filter", CS_OP_FILTER, &cs_op_filter, 0, 1},
    {"reduce", CS_OP_REDUCE, &cs_op_reduce, 1, 1},
    {"sink", CS_OP_SINK_CUSTOM, &cs_sink_custom, 0, 1},
    {"co_process", CS_OP_CO_PROCESS, &cs_op_co_process, 0, 2},
    {"co_flat_map", CS_OP_CO_FLAT_MAP, &cs_op_co_flat_map, 0, 2},
    {"co_map", CS_OP_CO_MAP, &cs_op_co_map, 0, 2},
};

/* Appends the value on top of L, with timestamp ts (CS_NO_TS: none), to
 * the list of records list_idx as {value = v, timestamp = ts}; pops it. */
static void keep_record(lua_State *L, int list_idx, int64_t ts) {
  int v = lua_gettop(L);
  list_idx = lua_absindex(L, list_idx);
  lua_createtable(L, 0, 2);
  lua_pushvalue(L, v);
  lua_setfield(L, -2, "value");
  if (ts != CS_NO_TS) {
    lua_pushinteger(L, ts);
    lua_setfield(L, -2, "timestamp");
  }
  lua_rawseti(L, list_idx, (lua_Integer)lua_rawlen(L, list_idx) + 1);
  lua_settop(L, v - 1);
}

/* The capture: a record the operator collected arrives here, chained. */
static int capture_process(lua_State *L, cs_opi *op, int input) {
  harness *h = op->data;
  (void)input;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->records_ref);
  lua_insert(L, -2);
  keep_record(L, -2, op->w->cur_ts);
  lua_pop(L, 1);
  return 0;
}

static const cs_op_type capture_type = {.name = "harness_output",
                                        .process = capture_process};

/* The worker's side output hook: ctx:output(tag, v) of the operator. */
static int capture_side(lua_State *L, cs_opi *op, const char *tag) {
  harness *h = container_of(op->w, harness, w);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->sides_ref);
  if (lua_getfield(L, -1, tag) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, tag);
  }
  lua_rotate(L, -3, -1); /* sides list v */
  keep_record(L, -2, op->w->cur_ts);
  lua_pop(L, 2);
  return 0;
}

/* =========================================================== lifecycle */

/* Builds the plan, job, worker and instances of h (zeroed). Returns 0 or
 * a negative CS_E* code; h_destroy undoes what was made either way. */
static int build(harness *h, int kind, int keyed, const char *name,
                 const char *uid, int maxp) {
  cs_node *n = &h->nodes[0], *cap = &h->nodes[1];
  /* what h_destroy reads first: refs to drop, instances to release */
  h->env_ref = h->records_ref = h->sides_ref = LUA_NOREF;
  for (int i = 0; i < 2; i++) {
    cs_opi *op = &h->opis[i];
    op->node = &h->nodes[i];
    op->self_ref = op->fn_ref[0] = op->fn_ref[1] = LUA_NOREF;
    op->ctx_ref = op->out_ref = LUA_NOREF;
  }
  n->index = 0;
  n->kind = KINDS[kind].kind;
  n->type = KINDS[kind].type;
  n->name = cs_strdup(name);
  n->id = cs_strdup(uid);
  n->parallelism = 1;
  n->keyed = keyed;
  n->ninputs = KINDS[kind].ninputs;
  for (int i = 0; i < n->ninputs; i++) {
    n->in[i].from = -1;
    n->in[i].edge = -1;
  }
  n->agg = CS_AGG_REDUCE;
  n->field.kind = CS_SEL_NONE;
  cap->index = 1;
  cap->kind = CS_OP_SINK_CUSTOM;
  cap->type = &capture_type;
  cap->name = cs_strdup("harness output");
  cap->id = cs_strdup("harness-output");
  cap->parallelism = 1;
  cap->ninputs = 1;
  cap->in[0].edge = -1;
  cap->chained = 1;
  if (!n->name || !n->id || !cap->name || !cap->id) return CS_ENOMEM;
  h->task_nodes[0] = 0;
  h->task_nodes[1] = 1;
  h->task = (cs_task){.root = 0, .parallelism = 1, .nnodes = 2, .nodes = h->task_nodes};
  h->plan = (cs_plan){.nnodes = 2, .nodes = h->nodes, .ntasks = 1, .tasks = &h->task,
                      .nworkers = 1, .max_parallelism = maxp};
  h->cfg.backend = "memory";
  cs_job *job = &h->job;
  job->plan = &h->plan;
  job->cfg = &h->cfg;
  job->name = "harness";
  job->script = SCRIPT;
  job->fingerprint = "";
  job->nworkers = 1;
  job->workers = &h->w;
  job->lock_fd = -1;
  if (uv_mutex_init(&job->lock) || uv_mutex_init(&job->out_lock) ||
      uv_cond_init(&job->reload_cond))
    return CS_ENOMEM; /* (glibc does not fail these) */
  h->sync_init = 1;
  cs_worker *w = &h->w;
  w->job = job;
  w->env_ref = LUA_NOREF;
  w->cur_ts = CS_NO_TS;
  w->test_clock = 1;
  w->side_output = capture_side;
  if (uv_loop_init(&w->loop)) return CS_ENOMEM;
  h->loop_init = 1;
  w->nopis = 2;
  w->opis = h->opis;
  w->ntinst = 1;
  w->tinst = &h->t;
  h->t = (cs_tinst){.task = &h->task, .w = w, .nops = 2, .ops = h->tops, .wm = CS_NO_TS,
                    .m = &h->tm};
  for (int i = 0; i < 2; i++) {
    cs_opi *op = &h->opis[i];
    op->w = w;
    op->t = &h->t;
    op->wm = CS_NO_TS;
    op->m = &h->opm[i];
    h->tops[i] = op;
  }
  h->out.chained = &h->opis[1];
  h->opis[0].out = &h->out;
  h->opis[0].nout = 1;
  h->opis[1].data = h;
  return 0;
}

/* Frees everything h holds, h included; L is the state its refs live in. */
static void h_destroy(lua_State *L, harness *h) {
  cs_opi *op = &h->opis[0];
  if (h->loop_init) cs_timers_destroy(op);
  if (op->node && op->node->type && op->node->type->release)
    op->node->type->release(L, op);
  if (op->node && op->node->type && op->node->type->destroy)
    op->node->type->destroy(op);
  cs_api_forget_worker(L, &h->w);
  luaL_unref(L, LUA_REGISTRYINDEX, h->env_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, h->records_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, h->sides_ref);
  if (op->be) op->be->ops->destroy(op->be);
  cs_buf_free(&op->rbuf);
  cs_buf_free(&h->key);
  cs_buf_free(&h->w.keybuf);
  cs_buf_free(&h->w.valbuf);
  cs_buf_free(&h->w.scratch);
  cs_buf_free(&h->w.out);
  cs_buf_free(&h->w.err);
  if (h->loop_init) {
    uv_run(&h->w.loop, UV_RUN_NOWAIT);
    uv_loop_close(&h->w.loop);
  }
  if (h->sync_init) {
    uv_mutex_destroy(&h->job.lock);
    uv_mutex_destroy(&h->job.out_lock);
    uv_cond_destroy(&h->job.reload_cond);
  }
  cs_free(h->job.error);
  for (int i = 0; i < 2; i++) {
    cs_free(h->nodes[i].name);
    cs_free(h->nodes[i].id);
  }
  cs_free(h);
}

/* The harness at index 1, raising when it is none or was destroyed. */
static harness *check(lua_State *L) {
  harness **box = luaL_checkudata(L, 1, HARNESS_MT);
  if (*box == NULL) luaL_error(L, SCRIPT ": this harness was destroyed");
  return *box;
}

/* The harness at index 1, open and not closed, for method fn. */
static harness *check_open(lua_State *L, const char *fn) {
  harness *h = check(L);
  if (!h->opened)
    luaL_error(L, SCRIPT ": %s: the harness of operator '%s' is not open (call "
                  "h:open() first)", fn, h->nodes[0].name);
  if (h->closed)
    luaL_error(L, SCRIPT ": %s: the harness of operator '%s' is closed", fn,
               h->nodes[0].name);
  return h;
}

/* Before user code runs: the harness's clock for timers and state TTL. */
static void enter(harness *h) {
  h->w.test_now_ms = h->now;
  cs_ttl_clock_set(h->now);
}

/* After it: no keyed context, the wall clock for TTL again. */
static void leave(harness *h) {
  h->w.key_valid = 0;
  h->w.cur_ts = CS_NO_TS;
  h->w.cur_op = NULL;
  cs_ttl_clock_real();
}

/* Raises the failure the operator reported (as a job would fail with it)
 * and clears it, so that the harness can go on. */
static int raise_failure(lua_State *L, harness *h) {
  lua_pushstring(L, h->job.error ? h->job.error : SCRIPT ": the operator failed");
  cs_free(h->job.error);
  h->job.error = NULL;
  atomic_store(&h->job.failed, 0);
  atomic_store(&h->w.abort, 0);
  return lua_error(L);
}

/* core._harness(operator, kind, keyed, name, uid, max_parallelism). */
int cs_testing_new(lua_State *L) {
  luaL_checkany(L, 1);
  const char *kname = luaL_checkstring(L, 2);
  int keyed = lua_toboolean(L, 3);
  const char *name = luaL_checkstring(L, 4);
  const char *uid = luaL_checkstring(L, 5);
  lua_Integer maxp = luaL_optinteger(L, 6, 128);
  int kind = -1;
  for (int i = 0; i < (int)(sizeof(KINDS) / sizeof(KINDS[0])); i++)
    if (strcmp(KINDS[i].name, kname) == 0) kind = i;
  if (kind < 0) return luaL_error(L, SCRIPT ": unknown operator kind '%s'", kname);
  if (KINDS[kind].keyed_only && !keyed)
    return luaL_error(L, SCRIPT ": a %s function runs on a keyed stream: use "
                         "testing.keyed", kname);
  if (maxp < 1 || maxp > 32768)
    return luaL_error(L, SCRIPT ": max_parallelism must be in 1..32768");
  lua_settop(L, 6);
  cs_testing_open_types(L);
  harness **box = lua_newuserdatauv(L, sizeof(harness *), 0);
  *box = NULL;
  luaL_setmetatable(L, HARNESS_MT);
  harness *h = cs_calloc(1, sizeof(*h));
  if (h == NULL) return luaL_error(L, "out of memory");
  *box = h; /* the box owns h from here: __gc frees it */
  if (build(h, kind, keyed, name, uid, (int)maxp))
    return luaL_error(L, "out of memory");
  lua_newtable(L);
  h->records_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  h->sides_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* the environment cs_api_bind reads: env._nodes[1].fn */
  lua_createtable(L, 0, 1);
  lua_createtable(L, 1, 0);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "fn");
  lua_rawseti(L, -2, 1);
  lua_setfield(L, -2, "_nodes");
  lua_pushvalue(L, -1);
  h->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  h->w.env_ref = h->env_ref;
  h->w.L = L;
  int rc = h->nodes[0].type->bind(L, &h->opis[0], lua_gettop(L));
  lua_pop(L, 1);
  if (rc) return raise_failure(L, h);
  return 1;
}

/* h:open(): initialize_state then open (and a keyed process function's
 * timers, those a restore brought included). */
static int h_open(lua_State *L) {
  harness *h = check(L);
  if (h->opened) return luaL_error(L, SCRIPT ": open: the harness is already open");
  cs_opi *op = &h->opis[0];
  h->w.L = L;
  enter(h);
  int rc = op->node->type->open ? op->node->type->open(L, op) : 0;
  leave(h);
  if (rc) return raise_failure(L, h);
  h->opened = 1;
  return 0;
}

/* h:close(): the operator's close(); the records stay readable. */
static int h_close(lua_State *L) {
  harness *h = check(L);
  if (!h->opened || h->closed) return 0;
  cs_opi *op = &h->opis[0];
  h->w.L = L;
  h->closed = 1;
  enter(h);
  int rc = op->node->type->close ? op->node->type->close(L, op) : 0;
  leave(h);
  if (rc) return raise_failure(L, h);
  return 0;
}

/* h:destroy() (also __close and __gc): frees the harness. */
static int h_gc(lua_State *L) {
  harness **box = luaL_checkudata(L, 1, HARNESS_MT);
  if (*box) h_destroy(L, *box);
  *box = NULL;
  return 0;
}

/* Makes the value at idx the current key: its canonical bytes and key
 * group. Raises when it cannot be a key. */
static void set_key(lua_State *L, harness *h, int idx, const char *fn) {
  char err[256];
  if (lua_isnil(L, idx))
    luaL_error(L, SCRIPT ": %s: the key is nil (operator '%s')", fn, h->nodes[0].name);
  cs_buf_reset(&h->key);
  int rc = cs_codec_encode_key(L, idx, &h->key, err, sizeof(err));
  if (rc)
    luaL_error(L, SCRIPT ": %s: the key cannot be used (operator '%s'): %s", fn,
               h->nodes[0].name, rc == CS_ENOMEM ? "out of memory" : err);
  h->kg = cs_key_group(h->key.data, h->key.len, h->plan.max_parallelism);
  h->has_key = 1;
}

/* An optional time argument: an integer number of ms, or nil. */
static int64_t opt_time(lua_State *L, int idx, const char *fn) {
  if (lua_isnoneornil(L, idx)) return CS_NO_TS;
  int ok = 0;
  lua_Integer t = lua_tointegerx(L, idx, &ok);
  if (!ok)
    luaL_error(L, SCRIPT ": %s: expected a time in milliseconds (an integer), got %s",
               fn, luaL_typename(L, idx));
  return t;
}

/* h:process(v[, ts[, key[, input]]]): v arrives at input (1 or 2 of a
 * connected stream's operator; 1 by default) with timestamp ts (nil:
 * none) and, on a keyed stream, key (what the key selector gave). */
static int h_process(lua_State *L) {
  harness *h = check_open(L, "process_element");
  cs_opi *op = &h->opis[0];
  lua_Integer input = luaL_optinteger(L, 5, 1);
  if (input < 1 || input > op->node->ninputs)
    return luaL_error(L, SCRIPT ": process_element: operator '%s' has no input %I",
                      op->node->name, input);
  lua_settop(L, 4);
  int64_t ts = opt_time(L, 3, "process_element");
  if (op->node->keyed) set_key(L, h, 4, "process_element");
  cs_worker *w = &h->w;
  w->L = L;
  enter(h);
  w->key_valid = op->node->keyed;
  w->cur_kg = h->kg;
  w->cur_key = (cs_slice){h->key.data, h->key.len};
  w->cur_ts = ts;
  lua_pushvalue(L, 2);
  int rc = cs_opi_process(L, op, (int)input - 1);
  leave(h);
  lua_settop(L, 4);
  if (rc) return raise_failure(L, h);
  return 0;
}

/* h:watermark(t): event time reaches t; event-time timers up to t fire. A
 * watermark not newer than the last one does nothing, as in a job. */
static int h_watermark(lua_State *L) {
  harness *h = check_open(L, "process_watermark");
  int64_t t = opt_time(L, 2, "process_watermark");
  if (t == CS_NO_TS) return luaL_error(L, SCRIPT ": process_watermark: expected a time");
  cs_opi *op = &h->opis[0];
  if (t <= op->wm) return 0;
  op->wm = h->t.wm = t;
  h->w.L = L;
  enter(h);
  int rc = op->node->type->on_watermark ? op->node->type->on_watermark(L, op, t) : 0;
  leave(h);
  if (rc) return raise_failure(L, h);
  return 0;
}

/* h:processing_time(t): processing time moves to t; processing-time
 * timers up to t fire. Time does not go back. */
static int h_processing_time(lua_State *L) {
  harness *h = check(L);
  int64_t t = opt_time(L, 2, "set_processing_time");
  if (t == CS_NO_TS) return luaL_error(L, SCRIPT ": set_processing_time: expected a time");
  if (t < h->now)
    return luaL_error(L, SCRIPT ": set_processing_time: processing time does not go "
                         "back (it is %I, asked for %I)", (lua_Integer)h->now,
                      (lua_Integer)t);
  h->now = t;
  if (!h->opened || h->closed) return 0;
  h->w.L = L;
  enter(h);
  int rc = cs_timers_fire(L, &h->opis[0], CS_TIME_PROCESSING, t);
  leave(h);
  if (rc) return raise_failure(L, h);
  return 0;
}

/* h:set_key(k): the key get_state reads (and the next record replaces). */
static int h_set_key(lua_State *L) {
  harness *h = check(L);
  if (!h->nodes[0].keyed)
    return luaL_error(L, SCRIPT ": set_current_key: operator '%s' is not on a keyed "
                         "stream (a one_input harness has no keys)", h->nodes[0].name);
  luaL_checkany(L, 2);
  set_key(L, h, 2, "set_current_key");
  return 0;
}

/* h:output(): the list of the main output's records (the harness's own:
 * copy what you keep). h:side_output(tag): those of side output tag, or
 * nil. h:clear_output() starts both afresh. */
static int h_output(lua_State *L) {
  harness *h = check(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->records_ref);
  return 1;
}

static int h_side_output(lua_State *L) {
  harness *h = check(L);
  const char *tag = luaL_checkstring(L, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->sides_ref);
  lua_getfield(L, -1, tag);
  return 1;
}

static int h_clear_output(lua_State *L) {
  harness *h = check(L);
  lua_newtable(L);
  lua_rawseti(L, LUA_REGISTRYINDEX, h->records_ref);
  lua_newtable(L);
  lua_rawseti(L, LUA_REGISTRYINDEX, h->sides_ref);
  return 0;
}

/* h:snapshot(): snapshot_state(ctx) of an open operator, then every state
 * and timer of the operator, as the bytes a checkpoint stores. */
static int h_snapshot(lua_State *L) {
  harness *h = check(L);
  cs_opi *op = &h->opis[0];
  h->w.L = L;
  if (h->opened && !h->closed && op->node->type->snapshot_state) {
    enter(h);
    int rc = op->node->type->snapshot_state(L, op);
    leave(h);
    if (rc) return raise_failure(L, h);
  }
  cs_backend *be = cs_opi_backend(op);
  if (be == NULL) return raise_failure(L, h);
  cs_buf b = {0};
  enter(h); /* the TTL clock: entries expired by now are left out */
  int rc = cs_backend_snapshot(be, 0, CS_OPSTATE_KEY_GROUP, &b);
  leave(h);
  if (rc) {
    cs_buf_free(&b);
    return luaL_error(L, SCRIPT ": snapshot: %s", cs_strerror(rc));
  }
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  cs_buf_free(&b);
  return 1;
}

/* h:restore(bytes): before open, the state and timers of a snapshot. */
static int h_restore(lua_State *L) {
  harness *h = check(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (h->opened)
    return luaL_error(L, SCRIPT ": restore: the harness is open; restore a snapshot "
                         "into a new harness, before h:open()");
  if (h->restored) return luaL_error(L, SCRIPT ": restore: the harness was restored already");
  cs_opi *op = &h->opis[0];
  h->w.L = L;
  cs_backend *be = cs_opi_backend(op);
  if (be == NULL) return raise_failure(L, h);
  enter(h);
  int rc = cs_backend_restore(be, data, len, 0, CS_OPSTATE_KEY_GROUP);
  leave(h);
  if (rc)
    return luaL_error(L, SCRIPT ": restore: %s", rc == CS_EDECODE
                                                    ? "the snapshot is corrupt or truncated"
                                                    : cs_strerror(rc));
  h->restored = op->restored = 1;
  return 0;
}

/* ================================================================ state */

/* The backend id of the state named name of h's operator, keyed (*op_state
 * 0) or operator state (1); -1 when there is none. */
static int find_state(harness *h, const char *name, int *op_state) {
  cs_backend *be = h->opis[0].be;
  if (be == NULL) return -1;
  static const char *const prefixes[] = {"", "#op/", "#uop/"};
  char full[512];
  for (int p = 0; p < 3; p++) {
    snprintf(full, sizeof(full), "%s/%s%s", h->nodes[0].id, prefixes[p], name);
    for (int id = 0; id < be->ops->state_count(be); id++) {
      const char *n;
      cs_state_kind k;
      if (be->ops->state_info(be, id, &n, &k) == 0 && strcmp(n, full) == 0) {
        *op_state = p > 0;
        return id;
      }
    }
  }
  return -1;
}

/* Pushes the names of the user states of h's operator, comma-separated. */
static void push_state_names(lua_State *L, harness *h) {
  cs_backend *be = h->opis[0].be;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t idlen = strlen(h->nodes[0].id);
  int any = 0;
  for (int id = 0; be && id < be->ops->state_count(be); id++) {
    const char *n;
    cs_state_kind k;
    if (be->ops->state_info(be, id, &n, &k) || strncmp(n, h->nodes[0].id, idlen) ||
        n[idlen] != '/' || n[idlen + 1] == '_')
      continue;
    const char *s = n + idlen + 1;
    if (strncmp(s, "#op/", 4) == 0) s += 4;
    else if (strncmp(s, "#uop/", 5) == 0) s += 5;
    if (any) luaL_addstring(&b, ", ");
    luaL_addchar(&b, '\'');
    luaL_addstring(&b, s);
    luaL_addchar(&b, '\'');
    any = 1;
  }
  if (!any) luaL_addstring(&b, "none");
  luaL_pushresult(&b);
}

/* Decodes the concatenated items of a list into a new array. [-0, +1] */
static int push_items(lua_State *L, cs_slice v) {
  lua_newtable(L);
  size_t off = 0;
  while (off < v.len) {
    size_t used = 0;
    if (cs_codec_decode(L, v.data + off, v.len - off, &used) || used == 0) return -1;
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    off += used;
  }
  return 0;
}

/* Pushes the entries of map state st at (kg, key) as a table. Returns 0
 * or a negative code (with the table pushed). */
static int push_map(lua_State *L, cs_backend *be, int st, int kg, cs_slice key,
                    const cs_ttl_config *ttl) {
  lua_newtable(L);
  cs_backend_iter *it = NULL;
  int rc = be->ops->map_iter(be, st, kg, key, &it);
  cs_backend_entry e;
  while (rc == 0 && (rc = be->ops->iter_next(it, &e)) == 1) {
    cs_slice v = e.val;
    rc = 0;
    if (ttl && cs_ttl_check(ttl, cs_ttl_now(), e.val, &v) != 0) continue;
    if (cs_codec_decode(L, e.ukey.data, e.ukey.len, NULL)) rc = CS_EDECODE;
    else if (cs_codec_decode(L, v.data, v.len, NULL)) {
      lua_pop(L, 1);
      rc = CS_EDECODE;
    } else
      lua_rawset(L, -3);
  }
  be->ops->iter_destroy(it);
  return rc < 0 ? rc : 0;
}

/* Pushes the value of state st of kind k at (kg, key): a value (nil when
 * none), a list's items or a map's entries (empty tables when none). */
static int push_state(lua_State *L, harness *h, int st, int kg, cs_slice key) {
  cs_backend *be = h->opis[0].be;
  const char *n;
  cs_state_kind k;
  cs_ttl_config ttl;
  be->ops->state_info(be, st, &n, &k);
  int has_ttl = be->ops->state_ttl(be, st, &ttl) == 1;
  cs_slice v;
  int rc;
  if (k == CS_STATE_MAP) return push_map(L, be, st, kg, key, has_ttl ? &ttl : NULL);
  if (k == CS_STATE_LIST) {
    cs_buf items = {0};
    if (has_ttl) {
      rc = cs_ttl_list_get(be, st, &ttl, kg, key, CS_TTL_NO_WRITE, &h->w.scratch, &items);
      v = (cs_slice){items.data, items.len};
    } else {
      rc = be->ops->get(be, st, kg, key, NULL, &v);
    }
    if (rc == CS_ENOTFOUND) v.len = 0, rc = 0;
    if (rc == 0 && push_items(L, v)) rc = CS_EDECODE;
    cs_buf_free(&items);
    return rc;
  }
  rc = has_ttl ? cs_ttl_get(be, st, &ttl, kg, key, NULL, CS_TTL_NO_WRITE, &h->w.scratch, &v)
               : be->ops->get(be, st, kg, key, NULL, &v);
  if (rc == CS_ENOTFOUND) {
    lua_pushnil(L);
    return 0;
  }
  if (rc == 0 && cs_codec_decode(L, v.data, v.len, NULL)) rc = CS_EDECODE;
  return rc;
}

/* h:state(name): the named state of the operator, for the current key
 * when keyed state (Flink: the harness's getState for the current key),
 * or operator list state. A state the operator never registered is an
 * error naming those it has. */
static int h_state(lua_State *L) {
  harness *h = check(L);
  const char *name = luaL_checkstring(L, 2);
  int op_state = 0;
  int st = find_state(h, name, &op_state);
  if (st < 0) {
    push_state_names(L, h);
    return luaL_error(L, SCRIPT ": get_state: operator '%s' has no state named '%s' "
                         "(its states: %s)", h->nodes[0].name, name, lua_tostring(L, -1));
  }
  int kg = CS_OPSTATE_KEY_GROUP;
  cs_slice key = {"", 0};
  if (!op_state) {
    if (!h->has_key)
      return luaL_error(L, SCRIPT ": get_state('%s'): there is no current key (process "
                           "an element or call h:set_current_key(k) first)", name);
    kg = h->kg;
    key = (cs_slice){h->key.data, h->key.len};
  }
  int top = lua_gettop(L);
  enter(h);
  int rc = push_state(L, h, st, kg, key);
  leave(h);
  if (rc) {
    lua_settop(L, top);
    return luaL_error(L, SCRIPT ": get_state('%s'): %s", name, cs_strerror(rc));
  }
  return 1;
}

/* h:name(): the operator's name, for messages. */
static int h_name(lua_State *L) {
  lua_pushstring(L, check(L)->nodes[0].name);
  return 1;
}

/* h:is_open(): opened and not closed. */
static int h_is_open(lua_State *L) {
  harness *h = check(L);
  lua_pushboolean(L, h->opened && !h->closed);
  return 1;
}

/* h:processing_time_now(): the harness's processing time. */
static int h_now(lua_State *L) {
  lua_pushinteger(L, check(L)->now);
  return 1;
}

/* h:current_watermark(): the newest watermark, or nil before the first. */
static int h_current_watermark(lua_State *L) {
  harness *h = check(L);
  if (h->opis[0].wm == CS_NO_TS) lua_pushnil(L);
  else lua_pushinteger(L, h->opis[0].wm);
  return 1;
}

static const luaL_Reg methods[] = {
    {"open", h_open},
    {"close", h_close},
    {"destroy", h_gc},
    {"process", h_process},
    {"watermark", h_watermark},
    {"processing_time", h_processing_time},
    {"set_key", h_set_key},
    {"output", h_output},
    {"side_output", h_side_output},
    {"clear_output", h_clear_output},
    {"snapshot", h_snapshot},
    {"restore", h_restore},
    {"state", h_state},
    {"name", h_name},
    {"is_open", h_is_open},
    {"now", h_now},
    {"current_watermark", h_current_watermark},
    {NULL, NULL}};

void cs_testing_open_types(lua_State *L) {
  if (luaL_newmetatable(L, HARNESS_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, h_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, h_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
}
