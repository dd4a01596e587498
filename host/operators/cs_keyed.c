/*
 * cs_keyed.c - the rolling aggregates of a keyed stream: sum, min and max
 * of a field (or of the record) and reduce with a user function. The
 * running value per key lives in the operator subtask's backend; each
 * record emits the new running value, as Flink does. sum/min/max keep both
 * the record and the running value encoded where they can.
 */
#include <lauxlib.h>
#include <string.h>

#include "host/api/cs_api.h"
#include "host/operators/cs_operators.h"
#include "state/cs_codec.h"


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
static int process_reduce(lua_State *L, cs_opi *op, int input) {
  (void)input;
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
      int nargs = cs_api_push_fn(L, op, 0);
      lua_pushvalue(L, acc);
      lua_pushvalue(L, rec);
      if (cs_api_call(L, op, nargs + 1, 1, rec)) {
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

static int reduce_encoded(lua_State *L, cs_opi *op, int input, cs_slice rec) {
  (void)input;
  if (op->node->agg == CS_AGG_REDUCE) return 1;
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

/* Binds the user function (reduce) and registers the rolling state. */
static int reduce_bind(lua_State *L, cs_opi *op, int env_idx) {
  if (cs_api_bind(L, op, env_idx)) return -1;
  if (op->w->reloading) return 0;
  cs_backend *be = cs_opi_backend(op);
  if (be == NULL) return -1;
  char name[256];
  snprintf(name, sizeof(name), "%s/_rolling", op->node->id);
  op->state_id = be->ops->register_state(be, name, CS_STATE_VALUE);
  if (op->state_id < 0) return cs_opi_fail(L, op, 0, "cannot register state");
  return 0;
}

const cs_op_type cs_op_reduce = {
    .name = "reduce",
    .method = {"reduce", NULL},
    .bind = reduce_bind,
    CS_API_LIFECYCLE,
    .process = process_reduce,
    .process_encoded = reduce_encoded,
};
