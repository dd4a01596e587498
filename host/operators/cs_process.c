/*
 * cs_process.c - process functions: process_element(self, v, ctx, out),
 * the lowest-level operator, with the Context (state, the current key,
 * the record's timestamp, the timer service, side outputs) and the
 * Collector. On a keyed stream it has timers (host/runtime/cs_timers.c):
 * event-time timers fire as the watermark passes them, processing-time
 * timers from the worker's loop, each calling on_timer(self, ts, ctx, out)
 * with the timer's key as the current key.
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

/* A timer is due: on_timer(self, ts, ctx, out). Output collected for an
 * event-time timer carries the timer's time; for a processing-time one
 * none, as in Flink. */
static int fire(lua_State *L, cs_opi *op, int domain, int64_t ts) {
  int top = lua_gettop(L);
  if (op->self_ref == LUA_NOREF) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->self_ref);
  if (lua_getfield(L, -1, "on_timer") != LUA_TFUNCTION) {
    lua_settop(L, top);
    return cs_opi_fail(L, op, 0, "a timer fired but the process function has "
                                 "no on_timer method");
  }
  lua_insert(L, -2); /* on_timer self */
  lua_pushinteger(L, ts);
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->ctx_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->out_ref);
  if (domain == CS_TIME_PROCESSING) op->w->cur_ts = CS_NO_TS;
  int rc = cs_api_call(L, op, 4, 0, 0);
  lua_settop(L, top);
  return rc;
}

/* open(): the timers of a keyed process function, then the user's open. */
static int process_open(lua_State *L, cs_opi *op) {
  if (op->node->keyed && cs_timers_open(op, fire)) return -1;
  return cs_api_open(L, op);
}

static int process_on_watermark(lua_State *L, cs_opi *op, int64_t wm) {
  return cs_timers_fire(L, op, CS_TIME_EVENT, wm);
}

const cs_op_type cs_op_co_process = {
    .name = "co_process", .method = {"process_element1", "process_element2"},
    .bind = cs_api_bind, .open = process_open,
    .snapshot_state = cs_api_snapshot_state, .close = cs_api_close,
    .release = cs_api_release,
    .process = process_element,
    .on_watermark = process_on_watermark};

const cs_op_type cs_op_process = {
    .name = "process", .method = {"process_element", NULL},
    .bind = cs_api_bind, .open = process_open,
    .snapshot_state = cs_api_snapshot_state, .close = cs_api_close,
    .release = cs_api_release,
    .process = process_element,
    .on_watermark = process_on_watermark};
