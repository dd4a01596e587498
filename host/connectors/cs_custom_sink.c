/*
 * cs_custom_sink.c - add_sink: a user function invoke(v, ctx), plain or in
 * a rich table (which may also keep operator state through
 * initialize_state and snapshot_state, as Flink's CheckpointedFunction).
 */
#include "host/api/cs_api.h"
#include "host/connectors/cs_connectors.h"

/* invoke(v, ctx). */
static int custom_sink_process(lua_State *L, cs_opi *op, int input) {
  int rec = lua_gettop(L);
  int nargs = cs_api_push_fn(L, op, input);
  lua_pushvalue(L, rec);
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->ctx_ref);
  if (cs_api_call(L, op, nargs + 1, 0, rec)) return -1;
  lua_settop(L, rec - 1);
  return 0;
}

const cs_op_type cs_sink_custom = {
    .name = "sink_custom", .method = {"invoke", NULL},
    .bind = cs_api_bind, CS_API_LIFECYCLE, .process = custom_sink_process};
