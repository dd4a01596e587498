/*
 * cs_operator.c - operator instances: binding a node's Lua functions in a
 * worker, open/close, the per-record dispatch for every operator kind, the
 * rolling aggregations, and the Context and Collector objects user code
 * receives.
 */
#include <lauxlib.h>
#include <string.h>

#include "state/cs_codec.h"
#include "host/lua/cs_format.h"
#include "host/lua/cs_lua.h"
#include "host/runtime/cs_runtime.h"
#include "host/api/cs_state.h"

#define CONTEXT_MT "cstream.Context"
#define COLLECTOR_MT "cstream.Collector"
#define RECORD_RENDER_MAX 200

/* ============================================================== errors */

int cs_opi_fail(lua_State *L, cs_opi *op, int rec_idx, const char *msg) {
  cs_buf b = {0};
  cs_node *n = op->node;
  cs_buf_printf(&b, "%s: error in operator '%s' (id %s, subtask %d/%d)",
                op->w->job->script, n->name ? n->name : "?", n->id,
                op->subtask + 1, n->parallelism);
  if (rec_idx != 0) {
    cs_buf r = {0};
    cs_format_value(L, rec_idx, &r);
    if (r.len > RECORD_RENDER_MAX)
      cs_buf_printf(&b, " on record %.*s...", RECORD_RENDER_MAX, r.data);
    else
      cs_buf_printf(&b, " on record %.*s", (int)r.len, r.data ? r.data : "");
    cs_buf_free(&r);
  }
  cs_buf_printf(&b, ":\n%s", msg);
  if (op->w->reloading) { /* a reload's error rolls it back, not the job */
    if (op->w->reload_error == NULL)
      op->w->reload_error = cs_strdup(b.data ? b.data : msg);
  } else {
    cs_job_fail(op->w->job, b.data ? b.data : msg);
  }
  cs_buf_free(&b);
  return -1;
}

/* Runs the function below nargs arguments through the one pcall door. On
 * error reports it (unless it is the abort marker) and returns -1 with the
 * stack at base-1, where base is the index of the function. */
static int call(lua_State *L, cs_opi *op, int nargs, int nres, int rec_idx) {
  int base = lua_gettop(L) - nargs;
  if (cs_lua_pcall(L, nargs, nres) == LUA_OK) return 0;
  if (!cs_lua_is_abort(L, -1)) {
    const char *m = lua_tostring(L, -1);
    cs_opi_fail(L, op, rec_idx, m ? m : "(error object is not a string)");
  }
  lua_settop(L, base - 1);
  return -1;
}

/* Pushes the function for input `input` and, for a rich function, self.
 * Returns the number of values pushed. */
static int push_fn(lua_State *L, cs_opi *op, int input) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->fn_ref[input]);
  if (op->self_ref == LUA_NOREF) return 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->self_ref);
  return 2;
}

/* ============================================================= binding */

static const char *method_of(cs_op_kind k, int input) {
  switch (k) {
  case CS_OP_MAP: return "map";
  case CS_OP_FLAT_MAP: return "flat_map";
  case CS_OP_FILTER: return "filter";
  case CS_OP_PROCESS: return "process_element";
  case CS_OP_REDUCE: return "reduce";
  case CS_OP_CO_MAP: return input ? "map2" : "map1";
  case CS_OP_CO_FLAT_MAP: return input ? "flat_map2" : "flat_map1";
  case CS_OP_SINK_CUSTOM: return "invoke";
  case CS_OP_SRC_CUSTOM: return "run";
  default: return NULL;
  }
}

static int new_handle(lua_State *L, cs_opi *op, const char *mt) {
  cs_opi **pp = lua_newuserdatauv(L, sizeof(cs_opi *), 0);
  *pp = op;
  luaL_setmetatable(L, mt);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

int cs_opi_bind(lua_State *L, cs_opi *op, int env_idx) {
  cs_node *n = op->node;
  int top = lua_gettop(L);
  lua_getfield(L, env_idx, "_nodes");
  lua_geti(L, -1, n->index + 1);
  lua_getfield(L, -1, "fn");
  int fn = lua_gettop(L);
  int two = n->kind == CS_OP_CO_MAP || n->kind == CS_OP_CO_FLAT_MAP;
  if (lua_istable(L, fn)) {
    lua_pushvalue(L, fn);
    op->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    for (int i = 0; i <= two; i++) {
      lua_getfield(L, fn, method_of(n->kind, i));
      if (!lua_isfunction(L, -1)) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the rich function has no '%s' method",
                 method_of(n->kind, i));
        lua_settop(L, top);
        return cs_opi_fail(L, op, 0, msg);
      }
      op->fn_ref[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
  } else if (lua_isfunction(L, fn)) {
    lua_pushvalue(L, fn);
    op->fn_ref[0] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_settop(L, top);
  op->ctx_ref = new_handle(L, op, CONTEXT_MT);
  op->out_ref = new_handle(L, op, COLLECTOR_MT);
  if (n->kind == CS_OP_REDUCE && !op->w->reloading) {
    cs_backend *be = cs_opi_backend(op);
    if (be == NULL) return -1;
    char name[256];
    snprintf(name, sizeof(name), "%s/_rolling", n->id);
    op->state_id = be->ops->register_state(be, name, CS_STATE_VALUE);
    if (op->state_id < 0) return cs_opi_fail(L, op, 0, "cannot register state");
  }
  if (n->kind >= CS_OP_SINK_PRINT && !op->w->reloading && cs_sink_open(op))
    return -1;
  return 0;
}

/* Calls self:<method>(ctx) when the rich function has that method. */
static int call_lifecycle(lua_State *L, cs_opi *op, const char *method) {
  if (op->self_ref == LUA_NOREF) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->self_ref);
  lua_getfield(L, -1, method);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 2);
    return 0;
  }
  lua_insert(L, -2); /* fn self */
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->ctx_ref);
  if (cs_lua_pcall(L, 2, 0) != LUA_OK) {
    if (!cs_lua_is_abort(L, -1)) {
      lua_pushfstring(L, "in %s(): %s", method,
                      lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
      cs_opi_fail(L, op, 0, lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

int cs_opi_open(lua_State *L, cs_opi *op) {
  if (call_lifecycle(L, op, "initialize_state")) return -1;
  return call_lifecycle(L, op, "open");
}

int cs_opi_snapshot_state(lua_State *L, cs_opi *op) {
  return call_lifecycle(L, op, "snapshot_state");
}

int cs_opi_close(lua_State *L, cs_opi *op) {
  if (op->self_ref == LUA_NOREF || op->fn_ref[0] == LUA_NOREF) return 0;
  int rc = call_lifecycle(L, op, "close");
  return rc;
}

void cs_opi_release(lua_State *L, cs_opi *op) {
  /* Handles outliving the operator must not reach it. */
  int refs[] = {op->ctx_ref, op->out_ref};
  for (int i = 0; i < 2; i++) {
    if (refs[i] == LUA_NOREF) continue;
    lua_rawgeti(L, LUA_REGISTRYINDEX, refs[i]);
    cs_opi **pp = lua_touserdata(L, -1);
    if (pp) *pp = NULL;
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, refs[i]);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, op->self_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, op->fn_ref[0]);
  luaL_unref(L, LUA_REGISTRYINDEX, op->fn_ref[1]);
  op->ctx_ref = op->out_ref = op->self_ref = LUA_NOREF;
  op->fn_ref[0] = op->fn_ref[1] = LUA_NOREF;
}

/* =================================================== rolling aggregates */

/* Pushes the aggregated field of the record at idx (or the record itself).
 * [-0, +1] */
static void push_field(lua_State *L, const cs_selector *f, int idx) {
  if (f->kind == CS_SEL_POS && lua_istable(L, idx))
    lua_geti(L, idx, f->pos);
  else if (f->kind == CS_SEL_FIELD && lua_istable(L, idx))
    lua_getfield(L, idx, f->field);
  else if (f->kind == CS_SEL_NONE)
    lua_pushvalue(L, idx);
  else
    lua_pushnil(L);
}

static const char *agg_name(cs_agg a) {
  return a == CS_AGG_SUM ? "sum" : a == CS_AGG_MIN ? "min" : "max";
}

/* Combines acc (at acc) and the record (at rec) for sum/min/max, leaving
 * the new accumulator on top.  [-0, +1] Returns 0 or -1. */
static int combine_builtin(lua_State *L, cs_opi *op, int acc, int rec) {
  cs_node *n = op->node;
  push_field(L, &n->field, acc);
  push_field(L, &n->field, rec);
  if (!lua_isnumber(L, -1) || !lua_isnumber(L, -2) ||
      lua_type(L, -1) != LUA_TNUMBER || lua_type(L, -2) != LUA_TNUMBER) {
    char msg[200];
    if (n->field.kind == CS_SEL_POS)
      snprintf(msg, sizeof(msg), "%s(%lld): field %lld is not a number",
               agg_name(n->agg), (long long)n->field.pos, (long long)n->field.pos);
    else if (n->field.kind == CS_SEL_FIELD)
      snprintf(msg, sizeof(msg), "%s(\"%s\"): field \"%s\" is not a number",
               agg_name(n->agg), n->field.field, n->field.field);
    else
      snprintf(msg, sizeof(msg), "%s(): the record is not a number",
               agg_name(n->agg));
    lua_pop(L, 2);
    return cs_opi_fail(L, op, rec, msg);
  }
  switch (n->agg) {
  case CS_AGG_SUM:
    lua_arith(L, LUA_OPADD);
    break;
  case CS_AGG_MIN:
    if (lua_compare(L, -1, -2, LUA_OPLT)) lua_remove(L, -2);
    else lua_pop(L, 1);
    break;
  default:
    if (lua_compare(L, -2, -1, LUA_OPLT)) lua_remove(L, -2);
    else lua_pop(L, 1);
    break;
  }
  if (n->field.kind == CS_SEL_NONE) return 0;
  /* Write the field into a copy of the accumulator table. */
  int v = lua_gettop(L);
  lua_pushvalue(L, acc);
  if (n->field.kind == CS_SEL_POS) {
    lua_pushvalue(L, v);
    lua_seti(L, -2, n->field.pos);
  } else {
    lua_pushvalue(L, v);
    lua_setfield(L, -2, n->field.field);
  }
  lua_remove(L, v);
  return 0;
}

/* sum/min/max/reduce on a keyed stream: the running value per key lives in
 * the state backend. */
static int process_reduce(lua_State *L, cs_opi *op) {
  cs_worker *w = op->w;
  cs_backend *be = op->be;
  int rec = lua_gettop(L);
  cs_slice cur;
  int rc = be->ops->get(be, op->state_id, w->cur_kg, w->cur_key, NULL, &cur);
  if (rc == CS_ENOTFOUND) {
    lua_pushvalue(L, rec);
  } else if (rc == 0) {
    if (cs_codec_decode(L, cur.data, cur.len, NULL)) {
      lua_settop(L, rec - 1);
      return cs_opi_fail(L, op, 0, "the rolling state is corrupt");
    }
    int acc = lua_gettop(L);
    if (op->node->agg == CS_AGG_REDUCE) {
      int nargs = push_fn(L, op, 0);
      lua_pushvalue(L, acc);
      lua_pushvalue(L, rec);
      if (call(L, op, nargs + 1, 1, rec)) {
        lua_settop(L, rec - 1);
        return -1;
      }
      if (lua_isnil(L, -1)) {
        lua_settop(L, rec);
        cs_opi_fail(L, op, rec, "reduce: the function returned nil");
        lua_settop(L, rec - 1);
        return -1;
      }
    } else if (combine_builtin(L, op, acc, rec)) {
      lua_settop(L, rec - 1);
      return -1;
    }
    lua_remove(L, acc);
  } else {
    lua_settop(L, rec - 1);
    return cs_opi_fail(L, op, 0, cs_strerror(rc));
  }
  /* [rec, result] */
  char err[256];
  cs_buf_reset(&w->scratch);
  if (cs_codec_encode(L, -1, &w->scratch, err, sizeof(err))) {
    char msg[320];
    snprintf(msg, sizeof(msg), "the running value cannot be stored: %s", err);
    cs_opi_fail(L, op, rec, msg);
    lua_settop(L, rec - 1);
    return -1;
  }
  cs_slice v = {w->scratch.data, w->scratch.len};
  rc = be->ops->put(be, op->state_id, w->cur_kg, w->cur_key, NULL, v);
  if (rc) {
    lua_settop(L, rec - 1);
    return cs_opi_fail(L, op, 0, cs_strerror(rc));
  }
  lua_remove(L, rec);
  return cs_emit(L, op);
}

/* The fast path of sum/min/max: both the record and the running value stay
 * encoded. Returns 0, -1 (failed), or 1 when the Lua path must take the
 * record (a field that is missing or not a number, mixed integer and float
 * for min/max): that path has the exact semantics and the error messages. */
static int field_encoded(const cs_selector *f, cs_slice rec, cs_slice *out) {
  switch (f->kind) {
  case CS_SEL_NONE: *out = rec; return 1;
  case CS_SEL_POS: return cs_codec_array_elem(rec, f->pos, out);
  case CS_SEL_FIELD:
    return cs_codec_map_field(rec, f->field, strlen(f->field), out);
  default: return 0;
  }
}

static int reduce_encoded(lua_State *L, cs_opi *op, cs_slice rec) {
  cs_node *n = op->node;
  cs_worker *w = op->w;
  cs_backend *be = op->be;
  cs_slice rf, acc, af;
  cs_num rn, an, sum;
  if (!field_encoded(&n->field, rec, &rf) || !cs_codec_number(rf, &rn))
    return 1;
  cs_buf *res = &op->rbuf;
  cs_buf_reset(res);
  int rc = be->ops->get(be, op->state_id, w->cur_kg, w->cur_key, NULL, &acc);
  if (rc == CS_ENOTFOUND) {
    rc = cs_buf_append(res, rec.data, rec.len);
  } else if (rc == 0) {
    if (!field_encoded(&n->field, acc, &af) || !cs_codec_number(af, &an))
      return 1;
    size_t head = (size_t)(af.data - acc.data);
    rc = cs_buf_append(res, acc.data, head);
    if (n->agg == CS_AGG_SUM) {
      if (an.is_int && rn.is_int) {
        sum.is_int = 1; /* wraps around, as Lua's integer addition */
        sum.i = (int64_t)((uint64_t)an.i + (uint64_t)rn.i);
      } else {
        sum.is_int = 0;
        sum.d = (an.is_int ? (double)an.i : an.d) + (rn.is_int ? (double)rn.i : rn.d);
      }
      if (rc == 0) rc = cs_codec_put_number(res, &sum);
    } else {
      if (an.is_int != rn.is_int) return 1;
      int take = n->agg == CS_AGG_MIN
                     ? (rn.is_int ? rn.i < an.i : rn.d < an.d)
                     : (rn.is_int ? an.i < rn.i : an.d < rn.d);
      cs_slice v = take ? rf : af;
      if (rc == 0) rc = cs_buf_append(res, v.data, v.len);
    }
    if (rc == 0)
      rc = cs_buf_append(res, af.data + af.len, acc.len - head - af.len);
  } else {
    return cs_opi_fail(L, op, 0, cs_strerror(rc));
  }
  if (rc) return cs_opi_fail(L, op, 0, "out of memory");
  cs_slice v = {res->data, res->len};
  rc = be->ops->put(be, op->state_id, w->cur_kg, w->cur_key, NULL, v);
  if (rc) return cs_opi_fail(L, op, 0, cs_strerror(rc));
  return cs_emit_encoded(L, op, v);
}

int cs_opi_process_encoded(lua_State *L, cs_opi *op, int input, cs_slice rec) {
  int rc = 1;
  op->w->cur_op = op;
  switch (op->node->kind) {
  case CS_OP_REDUCE:
    if (op->node->agg != CS_AGG_REDUCE) rc = reduce_encoded(L, op, rec);
    break;
  case CS_OP_SINK_PRINT:
  case CS_OP_SINK_FILE:
    rc = cs_sink_write_encoded(op, rec);
    break;
  default:
    break;
  }
  if (rc != 1) return rc;
  if (cs_codec_decode(L, rec.data, rec.len, NULL))
    return cs_opi_fail(L, op, 0, "internal error: a record is corrupt");
  return cs_opi_process(L, op, input);
}

/* ============================================================ dispatch */

int cs_opi_process(lua_State *L, cs_opi *op, int input) {
  int rec = lua_gettop(L);
  int nargs;
  op->w->cur_op = op;
  switch (op->node->kind) {
  case CS_OP_MAP:
  case CS_OP_CO_MAP:
    nargs = push_fn(L, op, input);
    lua_pushvalue(L, rec);
    if (call(L, op, nargs, 1, rec)) return -1;
    lua_remove(L, rec);
    return cs_emit(L, op);
  case CS_OP_FLAT_MAP:
  case CS_OP_CO_FLAT_MAP:
    nargs = push_fn(L, op, input);
    lua_pushvalue(L, rec);
    lua_rawgeti(L, LUA_REGISTRYINDEX, op->out_ref);
    if (call(L, op, nargs + 1, 0, rec)) return -1;
    lua_settop(L, rec - 1);
    return 0;
  case CS_OP_FILTER:
    nargs = push_fn(L, op, 0);
    lua_pushvalue(L, rec);
    if (call(L, op, nargs, 1, rec)) return -1;
    if (lua_toboolean(L, -1)) {
      lua_pop(L, 1);
      return cs_emit(L, op);
    }
    lua_settop(L, rec - 1);
    return 0;
  case CS_OP_PROCESS:
    nargs = push_fn(L, op, 0);
    lua_pushvalue(L, rec);
    lua_rawgeti(L, LUA_REGISTRYINDEX, op->ctx_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, op->out_ref);
    if (call(L, op, nargs + 2, 0, rec)) return -1;
    lua_settop(L, rec - 1);
    return 0;
  case CS_OP_REDUCE:
    return process_reduce(L, op);
  case CS_OP_SINK_PRINT:
  case CS_OP_SINK_FILE:
    return cs_sink_write(L, op);
  case CS_OP_SINK_CUSTOM:
    nargs = push_fn(L, op, 0);
    lua_pushvalue(L, rec);
    lua_rawgeti(L, LUA_REGISTRYINDEX, op->ctx_ref);
    if (call(L, op, nargs + 1, 0, rec)) return -1;
    lua_settop(L, rec - 1);
    return 0;
  default:
    lua_settop(L, rec - 1);
    return cs_opi_fail(L, op, 0, "internal error: a source received input");
  }
}

/* ================================================== Context, Collector */

static cs_opi *check_handle(lua_State *L, const char *mt) {
  cs_opi **pp = luaL_checkudata(L, 1, mt);
  if (*pp == NULL) luaL_error(L, "this %s is no longer valid (its operator closed)",
                              strcmp(mt, CONTEXT_MT) == 0 ? "context" : "collector");
  return *pp;
}

/* out:collect(v): sends v downstream. The per-record path: the handle is
 * checked against the metatable in the closure's upvalue rather than looked
 * up by name (luaL_checkudata). */
static int collector_collect(lua_State *L) {
  cs_opi *op = NULL;
  cs_opi **pp = lua_touserdata(L, 1);
  if (pp != NULL && lua_getmetatable(L, 1)) {
    if (lua_rawequal(L, -1, lua_upvalueindex(1))) op = *pp;
    lua_pop(L, 1);
  }
  if (op == NULL) op = check_handle(L, COLLECTOR_MT); /* raises the error */
  lua_settop(L, 2);
  if (cs_emit(L, op)) {
    cs_lua_push_abort(L);
    return lua_error(L);
  }
  return 0;
}

static int collector_tostring(lua_State *L) {
  lua_pushstring(L, "Collector");
  return 1;
}

static int ctx_index_of_this_subtask(lua_State *L) {
  cs_opi *op = check_handle(L, CONTEXT_MT);
  lua_pushinteger(L, op->subtask);
  return 1;
}

static int ctx_number_of_parallel_subtasks(lua_State *L) {
  cs_opi *op = check_handle(L, CONTEXT_MT);
  lua_pushinteger(L, op->node->parallelism);
  return 1;
}

static int ctx_get_task_name(lua_State *L) {
  cs_opi *op = check_handle(L, CONTEXT_MT);
  lua_pushstring(L, op->node->name);
  return 1;
}

static int ctx_get_current_key(lua_State *L) {
  cs_opi *op = check_handle(L, CONTEXT_MT);
  cs_worker *w = op->w;
  if (!op->node->keyed || !w->key_valid)
    return luaL_error(L, "get_current_key: operator '%s' is not on a keyed "
                         "stream (use key_by before it)", op->node->name);
  if (cs_codec_decode(L, w->cur_key.data, w->cur_key.len, NULL))
    return luaL_error(L, "get_current_key: the current key is corrupt");
  return 1;
}

/* ctx:collect(v) inside a source's run(). */
static int ctx_collect(lua_State *L) {
  cs_opi *op = check_handle(L, CONTEXT_MT);
  if (op->node->kind != CS_OP_SRC_CUSTOM)
    return luaL_error(L, "ctx:collect is for sources; use the collector "
                         "(out:collect) in operator '%s'", op->node->name);
  lua_settop(L, 2);
  return cs_source_collect(L, op);
}

static int ctx_tostring(lua_State *L) {
  lua_pushstring(L, "RuntimeContext");
  return 1;
}

void cs_operator_open_types(lua_State *L) {
  static const luaL_Reg collector_methods[] = {{"collect", NULL},
                                               {NULL, NULL}};
  static const luaL_Reg ctx_methods[] = {
      {"index_of_this_subtask", ctx_index_of_this_subtask},
      {"number_of_parallel_subtasks", ctx_number_of_parallel_subtasks},
      {"get_task_name", ctx_get_task_name},
      {"get_current_key", ctx_get_current_key},
      {"collect", ctx_collect},
      {NULL, NULL}};
  if (luaL_newmetatable(L, COLLECTOR_MT)) {
    luaL_newlib(L, collector_methods);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, collector_collect, 1);
    lua_setfield(L, -2, "collect");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, collector_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, CONTEXT_MT)) {
    luaL_newlib(L, ctx_methods);
    cs_state_add_context_methods(L, -1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ctx_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  cs_state_open_types(L);
}
