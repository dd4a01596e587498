/*
 * cs_function.c - user functions in operator instances: finding a node's
 * function or rich table in the worker's environment, calling it through
 * the one pcall door with errors reported against the operator and record,
 * its lifecycle methods (initialize_state, open, snapshot_state, close),
 * and the Context and Collector objects it receives.
 */
#include <lauxlib.h>
#include <string.h>

#include "host/api/cs_api.h"
#include "host/api/cs_api_int.h"
#include "host/lua/cs_lua.h"
#include "state/cs_codec.h"

#define CONTEXT_MT "cstream.Context"
#define COLLECTOR_MT "cstream.Collector"

/* Runs the function below nargs arguments through the one pcall door. On
 * error reports it (unless it is the abort marker) and returns -1 with the
 * stack at base-1, where base is the index of the function. */
int cs_api_call(lua_State *L, cs_opi *op, int nargs, int nres, int rec_idx) {
  int base = lua_gettop(L) - nargs;
  if (cs_lua_pcall(L, nargs, nres) == LUA_OK) return 0;
  if (!cs_lua_is_abort(L, -1)) {
    const char *m = lua_tostring(L, -1);
    cs_opi_fail(L, op, rec_idx, m ? m : "(error object is not a string)");
  }
  lua_settop(L, base - 1);
  return -1;
}


static int new_handle(lua_State *L, cs_opi *op, const char *mt) {
  cs_opi **pp = lua_newuserdatauv(L, sizeof(cs_opi *), 0);
  *pp = op;
  luaL_setmetatable(L, mt);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

int cs_api_bind(lua_State *L, cs_opi *op, int env_idx) {
  cs_node *n = op->node;
  const cs_op_type *type = n->type;
  int top = lua_gettop(L);
  lua_getfield(L, env_idx, "_nodes");
  lua_geti(L, -1, n->index + 1);
  lua_getfield(L, -1, "fn");
  int fn = lua_gettop(L);
  if (lua_istable(L, fn)) {
    lua_pushvalue(L, fn);
    op->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    for (int i = 0; i < 2 && type->method[i]; i++) {
      lua_getfield(L, fn, type->method[i]);
      if (!lua_isfunction(L, -1)) {
        char msg[160];
        snprintf(msg, sizeof(msg), "the rich function has no '%s' method",
                 type->method[i]);
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

int cs_api_open(lua_State *L, cs_opi *op) {
  if (call_lifecycle(L, op, "initialize_state")) return -1;
  return call_lifecycle(L, op, "open");
}

int cs_api_snapshot_state(lua_State *L, cs_opi *op) {
  return call_lifecycle(L, op, "snapshot_state");
}

int cs_api_close(lua_State *L, cs_opi *op) {
  if (op->self_ref == LUA_NOREF || op->fn_ref[0] == LUA_NOREF) return 0;
  int rc = call_lifecycle(L, op, "close");
  return rc;
}

void cs_api_release(lua_State *L, cs_opi *op) {
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


static cs_opi *check_handle(lua_State *L, const char *mt) {
  cs_opi **pp = luaL_checkudata(L, 1, mt);
  if (*pp == NULL) luaL_error(L, "this %s is no longer valid (its operator closed)",
                              strcmp(mt, CONTEXT_MT) == 0 ? "context" : "collector");
  return *pp;
}

/* out:collect(v): sends v downstream; out:collect(a, b, ...) sends the
 * tuple { a, b, ... }, encoded for an exchange straight from the arguments
 * (no table is made unless a chained operator needs one, or a value is
 * nil: then the table, holes and all, goes the usual way). The per-record
 * path: the handle is checked against the metatable in the closure's
 * upvalue rather than looked up by name (luaL_checkudata). */
static int collector_collect(lua_State *L) {
  cs_opi *op = NULL;
  cs_opi **pp = lua_touserdata(L, 1);
  if (pp != NULL && lua_getmetatable(L, 1)) {
    if (lua_rawequal(L, -1, lua_upvalueindex(1))) op = *pp;
    lua_pop(L, 1);
  }
  if (op == NULL) op = check_handle(L, COLLECTOR_MT); /* raises the error */
  int n = lua_gettop(L) - 1;
  if (n > 1) {
    int holes = 0;
    for (int i = 2; i <= n + 1; i++) holes |= lua_isnil(L, i);
    if (!holes) {
      if (cs_emit_tuple(L, op, 2, n)) {
        cs_lua_push_abort(L);
        return lua_error(L);
      }
      return 0;
    }
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
      lua_pushvalue(L, i + 1);
      lua_rawseti(L, -2, i);
    }
    lua_replace(L, 2);
  }
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
  if (op->node->type->src_collect == NULL)
    return luaL_error(L, "ctx:collect is for sources; use the collector "
                         "(out:collect) in operator '%s'", op->node->name);
  lua_settop(L, 2);
  return op->node->type->src_collect(L, op);
}

cs_opi *cs__check_context(lua_State *L) { return check_handle(L, CONTEXT_MT); }

/* out:collect_to(tag, v): sends v to the side output tag. */
static int collector_collect_to(lua_State *L) {
  return cs__output(L, check_handle(L, COLLECTOR_MT), "collect_to");
}

/* out:_timestamp(ts): sets the timestamp what is collected next carries
 * (ts nil: none) and returns the one it replaces (nil: none). Not public:
 * the window operator gives results its window's max_timestamp, as
 * Flink's TimestampedCollector does. */
static int collector_set_timestamp(lua_State *L) {
  cs_opi *op = check_handle(L, COLLECTOR_MT);
  cs_worker *w = op->w;
  int64_t prev = w->cur_ts;
  if (lua_isnoneornil(L, 2))
    w->cur_ts = CS_NO_TS;
  else
    w->cur_ts = luaL_checkinteger(L, 2);
  if (prev == CS_NO_TS)
    lua_pushnil(L);
  else
    lua_pushinteger(L, prev);
  return 1;
}

static int ctx_tostring(lua_State *L) {
  lua_pushstring(L, "RuntimeContext");
  return 1;
}

void cs_api_open_types(lua_State *L) {
  static const luaL_Reg collector_methods[] = {{"collect", NULL},
                                               {"collect_to", collector_collect_to},
                                               {"_timestamp", collector_set_timestamp},
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
    cs__state_add_context_methods(L, -1);
    cs__time_add_context_methods(L, -1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ctx_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  cs__state_open_types(L);
}
