/*
 * cs_time.c - assign_timestamps_and_watermarks: an operator that gives
 * each record its event time (the user's extractor, called as
 * extractor(v, previous_timestamp)) and generates watermarks from what it
 * saw, as Flink's WatermarkStrategy:
 *   bounded out-of-orderness  max timestamp - bound - 1 ms
 *   monotonous timestamps     the same with a bound of 0
 *   no watermarks             timestamps only
 * with an optional idle timeout: a generator that saw no record for that
 * long says so, and its consumers stop waiting for it. The runtime asks
 * for the watermark every pipeline.auto-watermark-interval.
 */
#include <math.h>
#include <string.h>

#include "host/api/cs_api.h"
#include "host/operators/cs_operators.h"

typedef struct assigner {
  int none;          /* no_watermarks */
  int64_t bound;     /* out-of-orderness, ms */
  int64_t idleness;  /* ms, 0: never idle */
  int64_t max_ts;    /* the largest timestamp seen, or CS_NO_TS */
  int64_t last_seen; /* wall-clock ms of the last record */
} assigner;

/* Reads the strategy of the node from the environment table at env_idx. */
static void read_strategy(lua_State *L, cs_opi *op, int env_idx, assigner *a) {
  lua_getfield(L, env_idx, "_nodes");
  lua_geti(L, -1, op->node->index + 1);
  lua_getfield(L, -1, "watermarks");
  a->none = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "none") == 0;
  lua_getfield(L, -2, "bound");
  a->bound = lua_tointeger(L, -1);
  lua_getfield(L, -3, "idleness");
  a->idleness = lua_tointeger(L, -1);
  lua_pop(L, 5);
}

static int assigner_bind(lua_State *L, cs_opi *op, int env_idx) {
  if (cs_api_bind(L, op, env_idx)) return -1;
  assigner *a = op->data;
  if (a == NULL) {
    a = cs_calloc(1, sizeof(*a));
    if (a == NULL) return cs_opi_fail(L, op, 0, "out of memory");
    a->max_ts = CS_NO_TS;
    a->last_seen = cs_now_ms();
    op->data = a;
  }
  read_strategy(L, op, env_idx, a);
  return 0;
}

static void assigner_destroy(cs_opi *op) {
  cs_free(op->data);
  op->data = NULL;
}

/* Calls the extractor on the record at the top of L, then emits the
 * record with that timestamp (the record's own is restored after). */
static int assigner_process(lua_State *L, cs_opi *op, int input) {
  cs_worker *w = op->w;
  assigner *a = op->data;
  int rec = lua_gettop(L);
  int64_t before = w->cur_ts;
  int nargs = cs_api_push_fn(L, op, input);
  lua_pushvalue(L, rec);
  if (before == CS_NO_TS)
    lua_pushnil(L);
  else
    lua_pushinteger(L, before);
  if (cs_api_call(L, op, nargs + 1, 1, rec)) return -1;
  int64_t ts = 0;
  int isnum = 0;
  if (lua_isinteger(L, -1)) {
    ts = lua_tointeger(L, -1);
    isnum = 1;
  } else if (lua_type(L, -1) == LUA_TNUMBER) {
    double d = floor(lua_tonumber(L, -1));
    isnum = isfinite(d) && d > -9.2e18 && d < 9.2e18;
    ts = isnum ? (int64_t)d : 0;
  }
  if (!isnum) {
    char msg[200];
    snprintf(msg, sizeof(msg), "assign_timestamps_and_watermarks: the timestamp "
             "extractor returned %s, not a number of milliseconds",
             lua_type(L, -1) == LUA_TNUMBER ? "a number that is not finite"
                                            : luaL_typename(L, -1));
    lua_settop(L, rec);
    cs_opi_fail(L, op, rec, msg);
    lua_settop(L, rec - 1);
    return -1;
  }
  lua_pop(L, 1);
  if (a->max_ts == CS_NO_TS || ts > a->max_ts) a->max_ts = ts;
  if (a->idleness) a->last_seen = cs_now_ms();
  w->cur_ts = ts;
  int rc = cs_emit(L, op);
  w->cur_ts = before;
  return rc;
}

static int64_t assigner_watermark(cs_opi *op, uint64_t now_ms, int *idle) {
  assigner *a = op->data;
  if (a == NULL) return CS_NO_TS;
  *idle = a->idleness > 0 && (int64_t)now_ms - a->last_seen >= a->idleness;
  if (a->none || a->max_ts == CS_NO_TS) return CS_NO_TS;
  if (a->max_ts < CS_NO_TS + a->bound + 1) return CS_NO_TS;
  return a->max_ts - a->bound - 1;
}

const cs_op_type cs_op_timestamps = {
    .name = "timestamps",
    .bind = assigner_bind,
    .release = cs_api_release,
    .process = assigner_process,
    .destroy = assigner_destroy,
    .gen_watermark = assigner_watermark,
};
