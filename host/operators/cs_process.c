/*
 * cs_process.c - process functions: process_element(self, v, ctx, out),
 * the lowest-level operator, with the Context (state, the current key) and
 * the Collector.
 */
#include "host/api/cs_api.h"
#include "host/operators/cs_operators.h"

/* process_element(v, ctx, out). */
static int process_element(lua_State *L, cs_opi *op, int input) {
  int rec = lua_gettop(L);
  int nargs = cs_api_push_fn(L, op, input);
  lua_pushvalue(L, rec);
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->ctx_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->out_ref);
  if (cs_api_call(L, op, nargs + 2, 0, rec)) return -1;
  lua_settop(L, rec - 1);
  return 0;
}

const cs_op_type cs_op_process = {
    .name = "process", .method = {"process_element", NULL},
    .bind = cs_api_bind, CS_API_LIFECYCLE, .process = process_element};
