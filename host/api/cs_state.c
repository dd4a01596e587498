/*
 * cs_state.c - managed state as Lua sees it: the keyed state objects (value,
 * list, map, reducing, aggregating, folding) and operator list state, all
 * stored in the worker's state backend as encoded bytes, never in Lua
 * tables, so state outlives any Lua state.
 *
 * A state object is a full userdata remembering its operator and backend
 * state id. Keyed state reads and writes the entry of the key of the record
 * being processed; operator state lives under a reserved key group. A state
 * with a time to live goes through cs_state_ttl.c wherever a value is read
 * or written (one flag test here for the others).
 */
#include <lauxlib.h>
#include <string.h>

#include "state/cs_codec.h"
#include "host/lua/cs_lua.h"
#include "host/runtime/cs_runtime.h"
#include "host/api/cs_api_int.h"

enum kind {
  K_VALUE = CS__K_VALUE,
  K_LIST = CS__K_LIST,
  K_MAP = CS__K_MAP,
  K_REDUCING = CS__K_REDUCING,
  K_AGGREGATING = CS__K_AGGREGATING,
  K_FOLDING = CS__K_FOLDING
};

static const char *const kind_names[] = {"value",    "list",        "map",
                                         "reducing", "aggregating", "folding"};
static const char *const kind_mts[] = {
    "cstream.ValueState",    "cstream.ListState",        "cstream.MapState",
    "cstream.ReducingState", "cstream.AggregatingState", "cstream.FoldingState"};

#define OPSTATE_MT "cstream.OperatorStateStore"
#define MAPITER_MT "cstream.MapStateIterator"

typedef cs__kstate kstate;

/* =========================================================== helpers */

/* The state object at index 1. The methods carry their metatable as an
 * upvalue, so the usual case is one pointer comparison, without
 * luaL_checkudata's lookup of the metatable by name; anything else goes to
 * luaL_checkudata, which raises the argument error. */
static kstate *check_state(lua_State *L, int kind) {
  kstate *s = lua_touserdata(L, 1);
  int ok = 0;
  if (s != NULL && lua_getmetatable(L, 1)) {
    ok = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
  }
  if (!ok) s = luaL_checkudata(L, 1, kind_mts[kind]);
  if (s->op == NULL) luaL_error(L, "%s state '%s' is closed", kind_names[kind], s->name);
  return s;
}

/* The (key group, key) the state addresses now; raises outside a keyed
 * context. */
static void current_key(lua_State *L, kstate *s, int *kg, cs_slice *key) {
  if (s->op_state) {
    *kg = CS_OPSTATE_KEY_GROUP;
    key->data = "";
    key->len = 0;
    return;
  }
  cs_worker *w = s->op->w;
  if (!w->key_valid)
    luaL_error(L, "%s state '%s': there is no current key here (keyed state "
                  "is read and written while a record is processed, not in "
                  "open() or close())", kind_names[s->kind], s->name);
  *kg = w->cur_kg;
  *key = w->cur_key;
}

/* The backend of the state's operator subtask (created when the state was
 * obtained, so never NULL here). */
static cs_backend *be_of(kstate *s) { return s->op->be; }

static void check_rc(lua_State *L, kstate *s, int rc) {
  if (rc == 0 || rc == CS_ENOTFOUND) return;
  if (rc == CS_ESTATE)
    luaL_error(L, "%s state '%s' was modified while it was being iterated",
               kind_names[s->kind], s->name);
  luaL_error(L, "%s state '%s': %s", kind_names[s->kind], s->name, cs_strerror(rc));
}

/* Encodes the value at idx into the worker's value buffer, raising a clear
 * error naming the state when it cannot be encoded. */
static cs_slice encode(lua_State *L, kstate *s, int idx, cs_buf *b, int as_key) {
  char err[256];
  cs_buf_reset(b);
  int rc = as_key ? cs_codec_encode_key(L, idx, b, err, sizeof(err))
                  : cs_codec_encode(L, idx, b, err, sizeof(err));
  if (rc)
    luaL_error(L, "%s state '%s' of operator '%s': %s %s", kind_names[s->kind],
               s->name, s->op->node->name, as_key ? "map key:" : "value:",
               rc == CS_ENOMEM ? "out of memory" : err);
  cs_slice sl = {b->data, b->len};
  return sl;
}

static int load_ttl(lua_State *L, kstate *s, cs_backend *be, int kg, cs_slice key,
                    const cs_slice *ukey);

/* Pushes the decoded stored value, or nothing; returns whether found. */
static int load(lua_State *L, kstate *s, const cs_slice *ukey) {
  int kg;
  cs_slice key, val;
  current_key(L, s, &kg, &key);
  cs_backend *be = be_of(s);
  if (s->ttl_on) return load_ttl(L, s, be, kg, key, ukey);
  int rc = be->ops->get(be, s->id, kg, key, ukey, &val);
  if (rc == CS_ENOTFOUND) return 0;
  check_rc(L, s, rc);
  if (cs_codec_decode(L, val.data, val.len, NULL))
    luaL_error(L, "%s state '%s': the stored value is corrupt", kind_names[s->kind], s->name);
  return 1;
}

/* load() for a TTL state: the read, then (done with its view) the
 * incremental cleanup. */
static int load_ttl(lua_State *L, kstate *s, cs_backend *be, int kg, cs_slice key,
                    const cs_slice *ukey) {
  cs_slice val;
  int rc = cs__ttl_get(s, be, kg, key, ukey, &val);
  if (rc != CS_ENOTFOUND) check_rc(L, s, rc);
  if (rc == 0 && cs_codec_decode(L, val.data, val.len, NULL))
    luaL_error(L, "%s state '%s': the stored value is corrupt", kind_names[s->kind], s->name);
  check_rc(L, s, cs__ttl_touch(s, be));
  return rc == 0;
}

static void store(lua_State *L, kstate *s, const cs_slice *ukey, int idx) {
  int kg;
  cs_slice key;
  current_key(L, s, &kg, &key);
  cs_slice v = encode(L, s, idx, &s->op->w->valbuf, 0);
  cs_backend *be = be_of(s);
  check_rc(L, s, s->ttl_on ? cs__ttl_put(s, be, kg, key, ukey, v)
                           : be->ops->put(be, s->id, kg, key, ukey, v));
}

static int state_clear(lua_State *L, kstate *s) {
  int kg;
  cs_slice key;
  current_key(L, s, &kg, &key);
  cs_backend *be = be_of(s);
  check_rc(L, s, be->ops->del(be, s->id, kg, key, NULL));
  return 0;
}

/* Calls the function below nargs args with one result through the one pcall
 * door; re-raises its error naming the state and what was called. */
static void call_user(lua_State *L, kstate *s, const char *what, int nargs) {
  if (cs_lua_pcall(L, nargs, 1) != LUA_OK) {
    if (cs_lua_is_abort(L, -1)) lua_error(L);
    luaL_error(L, "%s state '%s': the %s function failed: %s", kind_names[s->kind],
               s->name, what, lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
  }
  if (lua_isnil(L, -1))
    luaL_error(L, "%s state '%s': the %s function returned nil", kind_names[s->kind],
               s->name, what);
}

/* ============================================================== value */

static int value_value(lua_State *L) {
  kstate *s = check_state(L, K_VALUE);
  if (!load(L, s, NULL)) lua_pushnil(L);
  return 1;
}

static int value_update(lua_State *L) {
  kstate *s = check_state(L, K_VALUE);
  if (lua_isnoneornil(L, 2)) return state_clear(L, s);
  store(L, s, NULL, 2);
  return 0;
}

static int value_clear(lua_State *L) { return state_clear(L, check_state(L, K_VALUE)); }

/* =============================================================== list */

static int list_get(lua_State *L) {
  kstate *s = luaL_checkudata(L, 1, kind_mts[K_LIST]);
  int kg;
  cs_slice key, val;
  current_key(L, s, &kg, &key);
  cs_backend *be = be_of(s);
  lua_newtable(L);
  int rc;
  if (s->ttl_on) { /* the visible items, without their timestamps */
    cs_buf *items = &s->op->w->valbuf;
    cs_buf_reset(items);
    rc = cs__ttl_list_get(s, be, kg, key, items);
    val.data = items->data;
    val.len = items->len;
  } else {
    rc = be->ops->get(be, s->id, kg, key, NULL, &val);
  }
  if (rc == CS_ENOTFOUND) return 1;
  check_rc(L, s, rc);
  size_t off = 0;
  lua_Integer i = 1;
  while (off < val.len) {
    size_t used = 0;
    if (cs_codec_decode(L, val.data + off, val.len - off, &used))
      return luaL_error(L, "list state '%s': the stored list is corrupt", s->name);
    lua_rawseti(L, -2, i++);
    off += used;
  }
  return 1;
}

/* Appends the items of the array at idx (or the single value) to buf. */
static void encode_items(lua_State *L, kstate *s, int idx, int single, cs_buf *b) {
  char err[256];
  cs_buf_reset(b);
  lua_Integer n = single ? 1 : (lua_Integer)luaL_len(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    if (single) lua_pushvalue(L, idx);
    else lua_geti(L, idx, i);
    if (lua_isnil(L, -1))
      luaL_error(L, "list state '%s': nil cannot be added to a list state%s", s->name,
                 single ? "" : " (the table has a hole)");
    int rc = cs_codec_encode(L, -1, b, err, sizeof(err));
    if (rc)
      luaL_error(L, "list state '%s' of operator '%s': value: %s", s->name,
                 s->op->node->name, rc == CS_ENOMEM ? "out of memory" : err);
    lua_pop(L, 1);
  }
}

static void list_append(lua_State *L, kstate *s, int idx, int single, int replace) {
  int kg;
  cs_slice key;
  current_key(L, s, &kg, &key);
  cs_buf *b = &s->op->w->valbuf;
  encode_items(L, s, idx, single, b);
  cs_backend *be = be_of(s);
  if (replace) check_rc(L, s, be->ops->del(be, s->id, kg, key, NULL));
  if (b->len == 0) return;
  cs_slice v = {b->data, b->len};
  check_rc(L, s, s->ttl_on ? cs__ttl_list_append(s, be, kg, key, v)
                           : be->ops->append(be, s->id, kg, key, v));
}

static int list_add(lua_State *L) {
  kstate *s = luaL_checkudata(L, 1, kind_mts[K_LIST]);
  luaL_checkany(L, 2);
  list_append(L, s, 2, 1, 0);
  return 0;
}

static int list_add_all(lua_State *L) {
  kstate *s = luaL_checkudata(L, 1, kind_mts[K_LIST]);
  luaL_checktype(L, 2, LUA_TTABLE);
  list_append(L, s, 2, 0, 0);
  return 0;
}

static int list_update(lua_State *L) {
  kstate *s = luaL_checkudata(L, 1, kind_mts[K_LIST]);
  if (lua_isnoneornil(L, 2)) return state_clear(L, s);
  luaL_checktype(L, 2, LUA_TTABLE);
  list_append(L, s, 2, 0, 1);
  return 0;
}

static int list_clear(lua_State *L) {
  return state_clear(L, luaL_checkudata(L, 1, kind_mts[K_LIST]));
}

/* ================================================================ map */

static cs_slice map_key(lua_State *L, kstate *s, int idx) {
  if (lua_isnoneornil(L, idx))
    luaL_error(L, "map state '%s': nil cannot be a map key", s->name);
  return encode(L, s, idx, &s->op->w->keybuf, 1);
}

static int map_get(lua_State *L) {
  kstate *s = check_state(L, K_MAP);
  cs_slice uk = map_key(L, s, 2);
  if (!load(L, s, &uk)) lua_pushnil(L);
  return 1;
}

static int map_contains(lua_State *L) {
  kstate *s = check_state(L, K_MAP);
  cs_slice uk = map_key(L, s, 2), key, val;
  int kg;
  current_key(L, s, &kg, &key);
  cs_backend *be = be_of(s);
  int rc = s->ttl_on ? cs__ttl_contains(s, be, kg, key, &uk)
                     : be->ops->get(be, s->id, kg, key, &uk, &val);
  check_rc(L, s, rc);
  lua_pushboolean(L, rc == 0);
  return 1;
}

static int map_put(lua_State *L) {
  kstate *s = check_state(L, K_MAP);
  lua_settop(L, 3);
  cs_slice uk = map_key(L, s, 2);
  /* the key lives in keybuf, the value is encoded into valbuf */
  store(L, s, &uk, 3);
  return 0;
}

static int map_put_all(lua_State *L) {
  kstate *s = check_state(L, K_MAP);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    cs_slice uk = map_key(L, s, -2);
    store(L, s, &uk, -1);
    lua_pop(L, 1);
  }
  return 0;
}

static int map_remove(lua_State *L) {
  kstate *s = check_state(L, K_MAP);
  cs_slice uk = map_key(L, s, 2), key;
  int kg;
  current_key(L, s, &kg, &key);
  cs_backend *be = be_of(s);
  check_rc(L, s, be->ops->del(be, s->id, kg, key, &uk));
  return 0;
}

static int map_clear(lua_State *L) { return state_clear(L, check_state(L, K_MAP)); }

typedef struct mapiter {
  cs_backend_iter *it;
  cs_backend *be;
  kstate *s;
  int mode; /* 0 entries, 1 keys, 2 values */
  /* TTL states: the key iterated, and the writes its reads asked for
   * (cs_state_ttl.c), applied when the iteration ends */
  int kg;
  cs_buf key;
  cs_buf pending;
} mapiter;

/* Ends the iteration once: the backend iterator goes and, for a TTL state,
 * the queued writes are applied (apply) or dropped. Returns 0 or the error
 * of a write. */
static int mapiter_end(mapiter *mi, int apply) {
  int rc = 0;
  if (mi->it != NULL) {
    mi->be->ops->iter_destroy(mi->it);
    mi->it = NULL;
    if (mi->s->ttl_on) {
      mi->s->iterating--;
      cs_slice key = {mi->key.data, mi->key.len};
      if (apply) rc = cs__ttl_apply(mi->s, mi->be, mi->kg, key, &mi->pending);
    }
  }
  cs_buf_free(&mi->pending);
  cs_buf_free(&mi->key);
  return rc;
}

static int mapiter_close(lua_State *L) {
  mapiter *mi = luaL_checkudata(L, 1, MAPITER_MT);
  check_rc(L, mi->s, mapiter_end(mi, 1));
  return 0;
}

static int mapiter_gc(lua_State *L) {
  mapiter *mi = luaL_checkudata(L, 1, MAPITER_MT);
  (void)mapiter_end(mi, 0); /* no writes from a finalizer */
  return 0;
}

/* The generic-for step: returns the next entry, key or value (for a TTL
 * state, of the entries that are visible). */
static int mapiter_step(lua_State *L) {
  mapiter *mi = luaL_checkudata(L, 1, MAPITER_MT);
  if (mi->it == NULL) return 0;
  cs_backend_entry e;
  for (;;) {
    int rc = mi->be->ops->iter_next(mi->it, &e);
    if (rc <= 0) {
      int wrc = mapiter_end(mi, rc == 0);
      check_rc(L, mi->s, rc < 0 ? rc : wrc);
      return 0;
    }
    if (!mi->s->ttl_on) break;
    rc = cs__ttl_map_entry(mi->s, &e, &mi->pending, &e.val);
    if (rc < 0) {
      (void)mapiter_end(mi, 0);
      check_rc(L, mi->s, rc);
    }
    if (rc == 1) break;
  }
  int n = 0;
  if (mi->mode != 2) {
    if (cs_codec_decode(L, e.ukey.data, e.ukey.len, NULL))
      return luaL_error(L, "map state '%s': a stored key is corrupt", mi->s->name);
    n++;
  }
  if (mi->mode != 1) {
    if (cs_codec_decode(L, e.val.data, e.val.len, NULL))
      return luaL_error(L, "map state '%s': a stored value is corrupt", mi->s->name);
    n++;
  }
  return n;
}

static int map_iterate(lua_State *L, int mode) {
  kstate *s = check_state(L, K_MAP);
  int kg;
  cs_slice key;
  current_key(L, s, &kg, &key);
  lua_pushcfunction(L, mapiter_step);
  mapiter *mi = lua_newuserdatauv(L, sizeof(*mi), 1);
  memset(mi, 0, sizeof(*mi));
  luaL_setmetatable(L, MAPITER_MT);
  lua_pushvalue(L, 1); /* keep the state object alive */
  lua_setiuservalue(L, -2, 1);
  mi->be = be_of(s);
  mi->s = s;
  mi->mode = mode;
  mi->kg = kg;
  if (s->ttl_on && cs_buf_append(&mi->key, key.data, key.len))
    check_rc(L, s, CS_ENOMEM);
  check_rc(L, s, mi->be->ops->map_iter(mi->be, s->id, kg, key, &mi->it));
  if (s->ttl_on) s->iterating++;
  lua_pushnil(L);
  lua_pushvalue(L, -2); /* to-be-closed value: closes on break */
  return 4;
}

static int map_entries(lua_State *L) { return map_iterate(L, 0); }
static int map_keys(lua_State *L) { return map_iterate(L, 1); }
static int map_values(lua_State *L) { return map_iterate(L, 2); }

static int map_is_empty(lua_State *L) {
  kstate *s = check_state(L, K_MAP);
  int kg;
  cs_slice key;
  current_key(L, s, &kg, &key);
  cs_backend *be = be_of(s);
  if (s->ttl_on) {
    int empty;
    check_rc(L, s, cs__ttl_map_is_empty(s, be, kg, key, &empty));
    lua_pushboolean(L, empty);
    return 1;
  }
  cs_backend_iter *it = NULL;
  check_rc(L, s, be->ops->map_iter(be, s->id, kg, key, &it));
  cs_backend_entry e;
  int rc = be->ops->iter_next(it, &e);
  be->ops->iter_destroy(it);
  if (rc < 0) check_rc(L, s, rc);
  lua_pushboolean(L, rc == 0);
  return 1;
}

/* ========================================== reducing, aggregating, fold */

static int reducing_get(lua_State *L) {
  kstate *s = check_state(L, K_REDUCING);
  if (!load(L, s, NULL)) lua_pushnil(L);
  return 1;
}

static int reducing_add(lua_State *L) {
  kstate *s = check_state(L, K_REDUCING);
  lua_settop(L, 2);
  if (lua_isnil(L, 2)) return luaL_error(L, "reducing state '%s': nil cannot be added", s->name);
  if (load(L, s, NULL)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn_ref);
    lua_insert(L, -2);
    lua_pushvalue(L, 2);
    call_user(L, s, "reduce", 2);
  } else {
    lua_pushvalue(L, 2);
  }
  store(L, s, NULL, -1);
  return 0;
}

static int reducing_clear(lua_State *L) { return state_clear(L, check_state(L, K_REDUCING)); }

/* Pushes aggregate[name] (a function). */
static void push_agg_fn(lua_State *L, kstate *s, const char *name) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn_ref);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

static int aggregating_add(lua_State *L) {
  kstate *s = check_state(L, K_AGGREGATING);
  lua_settop(L, 2);
  push_agg_fn(L, s, "add");
  lua_pushvalue(L, 2);
  if (!load(L, s, NULL)) {
    push_agg_fn(L, s, "create_accumulator");
    call_user(L, s, "create_accumulator", 0);
  }
  call_user(L, s, "add", 2);
  store(L, s, NULL, -1);
  return 0;
}

static int aggregating_get(lua_State *L) {
  kstate *s = check_state(L, K_AGGREGATING);
  push_agg_fn(L, s, "get_result");
  if (!load(L, s, NULL)) {
    lua_pushnil(L);
    return 1;
  }
  if (cs_lua_pcall(L, 1, 1) != LUA_OK) {
    if (cs_lua_is_abort(L, -1)) return lua_error(L);
    return luaL_error(L, "aggregating state '%s': the get_result function failed: %s",
                      s->name, lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
  }
  return 1;
}

static int aggregating_clear(lua_State *L) {
  return state_clear(L, check_state(L, K_AGGREGATING));
}

static int folding_add(lua_State *L) {
  kstate *s = check_state(L, K_FOLDING);
  lua_settop(L, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn_ref);
  if (!load(L, s, NULL)) {
    /* a fresh copy of the initial value for every key */
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->init_ref);
    size_t len;
    const char *p = lua_tolstring(L, -1, &len);
    if (cs_codec_decode(L, p, len, NULL))
      return luaL_error(L, "folding state '%s': bad initial value", s->name);
    lua_remove(L, -2);
  }
  lua_pushvalue(L, 2);
  call_user(L, s, "fold", 2);
  store(L, s, NULL, -1);
  return 0;
}

static int folding_get(lua_State *L) {
  kstate *s = check_state(L, K_FOLDING);
  if (!load(L, s, NULL)) lua_pushnil(L);
  return 1;
}

static int folding_clear(lua_State *L) { return state_clear(L, check_state(L, K_FOLDING)); }

static int state_gc(lua_State *L) {
  kstate *s = lua_touserdata(L, 1);
  if (s && s->op) {
    luaL_unref(L, LUA_REGISTRYINDEX, s->fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, s->init_ref);
    s->fn_ref = s->init_ref = LUA_NOREF;
  }
  return 0;
}

static int state_tostring(lua_State *L) {
  kstate *s = lua_touserdata(L, 1);
  lua_pushfstring(L, "%s state '%s'", kind_names[s->kind], s->name);
  return 1;
}

/* ===================================================== registration */

static const char states_key = 's';

/* Pushes the table of the state registrations of worker w in L (made on
 * first use): registry[&states_key][w].
 * A worker has a Lua state of its own; an operator test harness shares the
 * state of its busted run with other harnesses.  [-0, +1] */
static void push_registrations(lua_State *L, const cs_worker *w) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &states_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &states_key);
  }
  if (lua_rawgetp(L, -1, w) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, -3, w);
  }
  lua_remove(L, -2);
}

void cs_api_forget_worker(lua_State *L, const cs_worker *w) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &states_key) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_rawsetp(L, -2, w);
  }
  lua_pop(L, 1);
}

/* One kind and one function per state name in an operator: checks the
 * registration of the state named at index fullname against the ones
 * before it in this Lua state (recording it when it is the first), and
 * pushes the descriptor's function (false for kinds without one).
 * [-0, +1, e] */
static void check_registry(lua_State *L, cs_opi *op, int kind, const char *getter,
                           const char *name, int fullname, const char *fnfield) {
  push_registrations(L, op->w);
  int reg = lua_gettop(L);
  if (fnfield) {
    lua_getfield(L, 2, fnfield);
    if (lua_isnil(L, -1))
      luaL_error(L, "%s('%s'): the descriptor has no %s", getter, name, fnfield);
  } else {
    lua_pushboolean(L, 0);
  }
  int fn = lua_gettop(L);
  if (lua_getfield(L, reg, lua_tostring(L, fullname)) == LUA_TTABLE) {
    lua_getfield(L, -1, "kind");
    if (lua_tointeger(L, -1) != kind) {
      lua_Integer old = lua_tointeger(L, -1);
      luaL_error(L, "%s('%s'): operator '%s' already has a %s state named '%s'",
                 getter, name, op->node->name, kind_names[old], name);
    }
    lua_getfield(L, -2, "fn");
    if (!lua_rawequal(L, -1, fn))
      luaL_error(L, "%s('%s'): state '%s' of operator '%s' is already registered "
                    "with another %s", getter, name, name, op->node->name, fnfield);
    lua_pop(L, 3);
  } else {
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushvalue(L, fn);
    lua_setfield(L, -2, "fn");
    lua_setfield(L, reg, lua_tostring(L, fullname));
  }
  lua_remove(L, reg);
}

/* Keeps the encoded initial value of a folding state's descriptor. */
static void keep_initial_value(lua_State *L, kstate *s, const char *getter,
                               const char *name) {
  char err[256];
  cs_buf b = {0};
  lua_getfield(L, 2, "initial_value");
  int rc = cs_codec_encode(L, -1, &b, err, sizeof(err));
  lua_pop(L, 1);
  if (rc) {
    cs_buf_free(&b);
    luaL_error(L, "%s('%s'): the initial value cannot be stored: %s", getter, name,
               err);
  }
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  cs_buf_free(&b);
  s->init_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* ctx:get_<kind>_state(descriptor): checks the descriptor, registers the
 * state with the backend (with the descriptor's time to live, which is
 * part of the registration) and returns a state object. */
static int get_state(lua_State *L, int kind, int op_state) {
  cs_opi **pp = op_state ? lua_touserdata(L, 1) : luaL_checkudata(L, 1, "cstream.Context");
  cs_opi *op = pp ? *pp : NULL;
  const char *getter = op_state ? "get_list_state" : lua_tostring(L, lua_upvalueindex(1));
  if (op == NULL) return luaL_error(L, "%s: the context is no longer valid", getter);
  if (!lua_istable(L, 2))
    return luaL_error(L, "%s: expected a %s_state_descriptor, got %s", getter,
                      kind_names[kind], luaL_typename(L, 2));
  lua_getfield(L, 2, "kind");
  const char *dk = lua_tostring(L, -1);
  lua_getfield(L, 2, "name");
  const char *name = lua_tostring(L, -1);
  if (dk == NULL || name == NULL)
    return luaL_error(L, "%s: expected a state descriptor (cstream.%s_state_descriptor)",
                      getter, kind_names[kind]);
  if (strcmp(dk, kind_names[kind]) != 0)
    return luaL_error(L, "%s: expected a %s_state_descriptor, got a %s_state_descriptor "
                         "for state '%s'", getter, kind_names[kind], dk, name);
  if (!op_state && !op->node->keyed)
    return luaL_error(L, "%s('%s'): operator '%s' is not on a keyed stream; keyed state "
                         "needs key_by() before the operator (or use operator state)",
                      getter, name, op->node->name);
  cs_ttl_config ttl;
  int ttl_on = cs__ttl_read_config(L, 2, getter, name, &ttl);
  if (ttl_on && op_state)
    return luaL_error(L, "%s('%s'): a time to live is for keyed state; operator state "
                         "does not expire", getter, name);
  cs_buf full = {0};
  if (cs_buf_printf(&full, "%s/%s%s", op->node->id,
                    op_state == 2 ? "#uop/" : op_state ? "#op/" : "", name)) {
    cs_buf_free(&full);
    return luaL_error(L, "%s('%s'): out of memory", getter, name);
  }
  lua_pushlstring(L, full.data, full.len);
  cs_buf_free(&full);
  int fullname = lua_gettop(L);
  const char *fnfield = kind == K_REDUCING ? "reduce_function"
                        : kind == K_AGGREGATING ? "aggregate_function"
                        : kind == K_FOLDING ? "fold_function" : NULL;
  check_registry(L, op, kind, getter, name, fullname, fnfield);
  int fn = lua_gettop(L);
  cs_state_kind bk = kind == K_LIST ? CS_STATE_LIST : kind == K_MAP ? CS_STATE_MAP
                                                                    : CS_STATE_VALUE;
  cs_backend *be = cs_opi_backend(op);
  if (be == NULL) {
    cs_lua_push_abort(L);
    return lua_error(L);
  }
  int id = be->ops->register_ttl_state(be, lua_tostring(L, fullname), bk,
                                       ttl_on ? &ttl : NULL);
  if (id == CS_ESTATE)
    return cs__ttl_register_error(L, be, lua_tostring(L, fullname), getter, name,
                                  op->node->name, ttl_on ? &ttl : NULL);
  if (id < 0) return luaL_error(L, "%s('%s'): %s", getter, name, cs_strerror(id));
  kstate *s = lua_newuserdatauv(L, sizeof(*s), 0);
  memset(s, 0, sizeof(*s));
  s->op = op;
  s->id = id;
  s->kind = kind;
  s->op_state = op_state;
  s->fn_ref = s->init_ref = LUA_NOREF;
  s->ttl_on = ttl_on;
  if (ttl_on) s->ttl = ttl;
  snprintf(s->name, sizeof(s->name), "%s", name);
  luaL_setmetatable(L, kind_mts[kind]);
  if (fnfield) {
    lua_pushvalue(L, fn);
    s->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (kind == K_FOLDING) keep_initial_value(L, s, getter, name);
  return 1;
}

static int ctx_get_state(lua_State *L) { return get_state(L, K_VALUE, 0); }
static int ctx_get_list_state(lua_State *L) { return get_state(L, K_LIST, 0); }
static int ctx_get_map_state(lua_State *L) { return get_state(L, K_MAP, 0); }
static int ctx_get_reducing_state(lua_State *L) { return get_state(L, K_REDUCING, 0); }
static int ctx_get_aggregating_state(lua_State *L) { return get_state(L, K_AGGREGATING, 0); }
static int ctx_get_folding_state(lua_State *L) { return get_state(L, K_FOLDING, 0); }

/* The operator state store shares the context's userdata layout. */
static int store_get_list_state(lua_State *L) {
  luaL_checkudata(L, 1, OPSTATE_MT);
  return get_state(L, K_LIST, 1);
}

/* Union list state: on restore every subtask gets the whole list. */
static int store_get_union_list_state(lua_State *L) {
  luaL_checkudata(L, 1, OPSTATE_MT);
  return get_state(L, K_LIST, 2);
}

static int ctx_get_operator_state_store(lua_State *L) {
  cs_opi **pp = lua_touserdata(L, 1);
  if (pp == NULL || *pp == NULL) return luaL_error(L, "the context is no longer valid");
  cs_opi **sp = lua_newuserdatauv(L, sizeof(cs_opi *), 0);
  *sp = *pp;
  luaL_setmetatable(L, OPSTATE_MT);
  return 1;
}

static int ctx_is_restored(lua_State *L) {
  cs_opi **pp = lua_touserdata(L, 1);
  lua_pushboolean(L, pp && *pp && (*pp)->restored);
  return 1;
}

void cs__state_open_types(lua_State *L) {
  static const luaL_Reg value_m[] = {
      {"value", value_value}, {"update", value_update}, {"clear", value_clear}, {NULL, NULL}};
  static const luaL_Reg list_m[] = {{"get", list_get},         {"add", list_add},
                                    {"add_all", list_add_all}, {"update", list_update},
                                    {"clear", list_clear},     {NULL, NULL}};
  static const luaL_Reg map_m[] = {
      {"get", map_get},         {"put", map_put},           {"put_all", map_put_all},
      {"remove", map_remove},   {"contains", map_contains}, {"is_empty", map_is_empty},
      {"clear", map_clear},     {"entries", map_entries},   {"keys", map_keys},
      {"values", map_values},   {NULL, NULL}};
  static const luaL_Reg reducing_m[] = {
      {"get", reducing_get}, {"add", reducing_add}, {"clear", reducing_clear}, {NULL, NULL}};
  static const luaL_Reg aggregating_m[] = {{"get", aggregating_get},
                                           {"add", aggregating_add},
                                           {"clear", aggregating_clear},
                                           {NULL, NULL}};
  static const luaL_Reg folding_m[] = {
      {"get", folding_get}, {"add", folding_add}, {"clear", folding_clear}, {NULL, NULL}};
  const luaL_Reg *methods[] = {value_m, list_m, map_m, reducing_m, aggregating_m, folding_m};
  for (int k = 0; k < 6; k++) {
    if (luaL_newmetatable(L, kind_mts[k])) {
      lua_newtable(L);
      lua_pushvalue(L, -2); /* the metatable, the methods' upvalue */
      luaL_setfuncs(L, methods[k], 1);
      lua_setfield(L, -2, "__index");
      lua_pushcfunction(L, state_gc);
      lua_setfield(L, -2, "__gc");
      lua_pushcfunction(L, state_tostring);
      lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
  }
  if (luaL_newmetatable(L, MAPITER_MT)) {
    lua_pushcfunction(L, mapiter_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, mapiter_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, OPSTATE_MT)) {
    static const luaL_Reg store_m[] = {{"get_list_state", store_get_list_state},
                                       {"get_union_list_state", store_get_union_list_state},
                                       {NULL, NULL}};
    luaL_newlib(L, store_m);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

void cs__state_add_context_methods(lua_State *L, int methods_idx) {
  static const struct {
    const char *name;
    lua_CFunction fn;
  } getters[] = {{"get_state", ctx_get_state},
                 {"get_list_state", ctx_get_list_state},
                 {"get_map_state", ctx_get_map_state},
                 {"get_reducing_state", ctx_get_reducing_state},
                 {"get_aggregating_state", ctx_get_aggregating_state},
                 {"get_folding_state", ctx_get_folding_state}};
  methods_idx = lua_absindex(L, methods_idx);
  for (size_t i = 0; i < sizeof(getters) / sizeof(getters[0]); i++) {
    lua_pushstring(L, getters[i].name);
    lua_pushcclosure(L, getters[i].fn, 1);
    lua_setfield(L, methods_idx, getters[i].name);
  }
  lua_pushcfunction(L, ctx_get_operator_state_store);
  lua_setfield(L, methods_idx, "get_operator_state_store");
  lua_pushcfunction(L, ctx_is_restored);
  lua_setfield(L, methods_idx, "is_restored");
}
