/*
 * cs_api.h - host/api: the objects user functions receive, and the calls
 * operators and connectors use to run user functions. What others may call.
 *
 * A node's user function is a plain function or a "rich function" (a table
 * with the method the operator kind names, and optional lifecycle methods
 * open, close, initialize_state and snapshot_state). It receives a
 * Context (ctx: subtask, keyed and operator state) and, where it emits, a
 * Collector (out:collect). Managed state objects (value, list, map,
 * reducing, aggregating, folding; operator list state) keep their data in
 * the operator subtask's backend, never in Lua, so state outlives any Lua
 * state (cs_state.c).
 *
 * Depends on host/runtime (emit, fail, the current key) and below.
 */
#ifndef CS_API_H
#define CS_API_H

#include <lauxlib.h>
#include <lua.h>

#include "host/runtime/cs_runtime.h"

/* Registers the Context, Collector and state metatables in L. */
void cs_api_open_types(lua_State *L);

/* Finds op's function (or rich table and its type's method(s)) in the
 * environment table at env_idx and creates its Context and Collector.
 * Returns 0 or -1 (reported). */
int cs_api_bind(lua_State *L, cs_opi *op, int env_idx);
/* initialize_state(ctx) then open(ctx) of a rich function. 0 or -1. */
int cs_api_open(lua_State *L, cs_opi *op);
/* snapshot_state(ctx) of a rich function, before its operator state is
 * copied into a checkpoint. 0 or -1. */
int cs_api_snapshot_state(lua_State *L, cs_opi *op);
/* close() of a rich function. 0 or -1. */
int cs_api_close(lua_State *L, cs_opi *op);
/* Drops op's Lua refs; its Context and Collector become invalid. */
void cs_api_release(lua_State *L, cs_opi *op);
/* Forgets the state registrations (names, kinds, functions) of w's
 * operators that L remembers: w ends while L lives on (a test harness). */
void cs_api_forget_worker(lua_State *L, const cs_worker *w);

/* The lifecycle of an operator type whose node holds a user function, for
 * a cs_op_type initialiser (with .bind = cs_api_bind, or a bind of the
 * type's own that calls it). */
#define CS_API_LIFECYCLE                                              \
  .open = cs_api_open, .snapshot_state = cs_api_snapshot_state,       \
  .close = cs_api_close, .release = cs_api_release

/* Pushes the function for input `input` and, for a rich function, self.
 * Returns the number of values pushed.  [-0, +1|2] */
static inline int cs_api_push_fn(lua_State *L, cs_opi *op, int input) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->fn_ref[input]);
  if (op->self_ref == LUA_NOREF) return 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->self_ref);
  return 2;
}

/* Runs the function below nargs arguments through the one pcall door. On
 * error reports it against op and the record at rec_idx (0: none), unless
 * it is the abort marker, and returns -1 with the stack at base-1, where
 * base is the index of the function. */
int cs_api_call(lua_State *L, cs_opi *op, int nargs, int nres, int rec_idx);

#endif /* CS_API_H */
