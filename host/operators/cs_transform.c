/*
 * cs_transform.c - the record-at-a-time transforms: map (one record out per
 * record in), flat_map (any number, through the Collector), filter (the
 * record or nothing), and their connected-stream versions, whose rich
 * function has one method per input (map1/map2, flat_map1/flat_map2).
 */
#include "host/api/cs_api.h"
#include "host/operators/cs_operators.h"

/* map(v) -> v2, emitted. */
static int process_map(lua_State *L, cs_opi *op, int input) {
  int rec = lua_gettop(L);
  int nargs = cs_api_push_fn(L, op, input);
  lua_pushvalue(L, rec);
  if (cs_api_call(L, op, nargs, 1, rec)) return -1;
  lua_remove(L, rec);
  return cs_emit(L, op);
}

/* flat_map(v, out): emits through out:collect. */
static int process_flat_map(lua_State *L, cs_opi *op, int input) {
  int rec = lua_gettop(L);
  int nargs = cs_api_push_fn(L, op, input);
  lua_pushvalue(L, rec);
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->out_ref);
  if (cs_api_call(L, op, nargs + 1, 0, rec)) return -1;
  lua_settop(L, rec - 1);
  return 0;
}

/* filter(v): v is emitted when the result is true. */
static int process_filter(lua_State *L, cs_opi *op, int input) {
  int rec = lua_gettop(L);
  int nargs = cs_api_push_fn(L, op, input);
  lua_pushvalue(L, rec);
  if (cs_api_call(L, op, nargs, 1, rec)) return -1;
  if (lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    return cs_emit(L, op);
  }
  lua_settop(L, rec - 1);
  return 0;
}

const cs_op_type cs_op_map = {
    .name = "map", .method = {"map", NULL},
    .bind = cs_api_bind, CS_API_LIFECYCLE, .process = process_map};
const cs_op_type cs_op_flat_map = {
    .name = "flat_map", .method = {"flat_map", NULL},
    .bind = cs_api_bind, CS_API_LIFECYCLE, .process = process_flat_map};
const cs_op_type cs_op_filter = {
    .name = "filter", .method = {"filter", NULL},
    .bind = cs_api_bind, CS_API_LIFECYCLE, .process = process_filter};
const cs_op_type cs_op_co_map = {
    .name = "co_map", .method = {"map1", "map2"},
    .bind = cs_api_bind, CS_API_LIFECYCLE, .process = process_map};
const cs_op_type cs_op_co_flat_map = {
    .name = "co_flat_map", .method = {"flat_map1", "flat_map2"},
    .bind = cs_api_bind, CS_API_LIFECYCLE, .process = process_flat_map};
